//! The README quotes the example scripts; a quote must be what the script says.

use std::path::Path;

#[test]
fn every_quoted_example_is_in_its_file() {
    // Arrange
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut quotes = 0;

    // Act: each `<!-- examples/… -->` marker names the file of the block after it.
    for (marker, rest) in readme
        .split("<!-- ")
        .skip(1)
        .map(|s| s.split_once(" -->").unwrap())
    {
        let block = rest
            .split_once("```")
            .and_then(|(_, b)| b.split_once('\n'))
            .and_then(|(_, b)| b.split_once("```"))
            .map(|(code, _)| code)
            .unwrap_or_else(|| panic!("no code block after <!-- {marker} -->"));
        let file = std::fs::read_to_string(root.join(marker))
            .unwrap_or_else(|e| panic!("README quotes {marker}: {e}"));

        // Assert
        assert!(
            file.contains(block),
            "README's quote of {marker} is not in the file:\n{block}"
        );
        quotes += 1;
    }
    assert!(quotes >= 3, "the README quotes the examples");
}

//! Todo rules: titles.

pub const TITLE_MAX: usize = 500;

/// Why one-line text with a control character is refused: NUL cannot be
/// stored by PostgreSQL (and neither backend may store what the other could
/// not), and the others (a newline, an escape sequence, a backspace) make a
/// title or a name print as something else in a list, a log or a terminal.
pub const CONTROL_REFUSED: &str =
    "must not contain control characters (U+0000 to U+001F and U+007F to U+009F: NUL, tab, newline, escape…)";

/// Whether `s` holds a character of the Unicode `Cc` category.
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A todo title: 1 to 500 characters once surrounding whitespace is trimmed,
/// with no control character inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TodoTitle(String);

impl TodoTitle {
    pub fn parse(s: &str) -> Result<TodoTitle, &'static str> {
        let s = s.trim();
        match s.chars().count() {
            0 => Err("must not be empty or only whitespace"),
            n if n > TITLE_MAX => Err("must be at most 500 characters"),
            _ if has_control(s) => Err(CONTROL_REFUSED),
            _ => Ok(TodoTitle(s.to_owned())),
        }
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(TodoTitle::parse("  milk ").unwrap().into_inner(), "milk");
        assert!(TodoTitle::parse("   ").is_err());
        assert!(TodoTitle::parse(&"é".repeat(500)).is_ok());
        assert!(TodoTitle::parse(&"x".repeat(501)).is_err());
        assert!(TodoTitle::parse(&format!(" {} ", "x".repeat(500))).is_ok());
    }

    #[test]
    fn a_title_holds_no_control_character() {
        for bad in [
            "milk\0",
            "tab\tinside",
            "new\nline",
            "carriage\rreturn",
            "\u{1b}[31mred",
            "back\u{8}space",
            "del\u{7f}ete",
            "c1\u{85}next line",
            "c1\u{9f}end",
        ] {
            assert_eq!(TodoTitle::parse(bad), Err(CONTROL_REFUSED), "{bad:?}");
        }
    }

    #[test]
    fn surrounding_whitespace_is_trimmed_before_control_characters_are_looked_for() {
        assert_eq!(TodoTitle::parse("\t milk \n").unwrap().into_inner(), "milk");
        // Not control characters: a no-break space, a zero-width joiner in an
        // emoji, and letters of any script.
        assert!(TodoTitle::parse("milk\u{a0}and 👩\u{200d}💻 café ñ").is_ok());
    }
}

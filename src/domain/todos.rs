//! Todo rules: titles.

pub const TITLE_MAX: usize = 500;

/// Why text with a NUL character is refused: neither backend may store what
/// the other could not.
pub const NUL_REFUSED: &str = "must not contain the NUL character (U+0000)";

/// A todo title: 1 to 500 characters once surrounding whitespace is trimmed,
/// without NUL, which PostgreSQL's text cannot hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TodoTitle(String);

impl TodoTitle {
    pub fn parse(s: &str) -> Result<TodoTitle, &'static str> {
        let s = s.trim();
        match s.chars().count() {
            0 => Err("must not be empty or only whitespace"),
            n if n > TITLE_MAX => Err("must be at most 500 characters"),
            _ if s.contains('\0') => Err(NUL_REFUSED),
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
    fn a_title_holds_no_nul() {
        assert_eq!(TodoTitle::parse("milk\0"), Err(NUL_REFUSED));
        assert!(TodoTitle::parse("tab\tand newline\n inside").is_ok());
    }
}

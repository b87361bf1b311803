//! Todo rules: titles.

pub const TITLE_MAX: usize = 500;

/// A todo title: 1 to 500 characters once surrounding whitespace is trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TodoTitle(String);

impl TodoTitle {
    pub fn parse(s: &str) -> Result<TodoTitle, &'static str> {
        let s = s.trim();
        match s.chars().count() {
            0 => Err("must not be empty or only whitespace"),
            n if n > TITLE_MAX => Err("must be at most 500 characters"),
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
}

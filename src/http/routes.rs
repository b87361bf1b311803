//! The path templates the app serves (`/todos/{id}`) and the methods each
//! takes: which template a request's path falls under, for a `405` to name
//! the methods (RFC 9110 §15.5.6) and for the request log and histogram to
//! name the route without the ids in it.

/// Every template, in the order given.
pub struct Routes(Vec<Template>);

struct Template {
    text: String,
    segments: Vec<Segment>,
    /// How many segments are fixed text: the router prefers those to a
    /// parameter, and so does [`Routes::find`].
    fixed: usize,
    methods: Vec<String>,
}

enum Segment {
    Fixed(String),
    /// `{name}`: any one non-empty segment.
    Param,
}

impl Routes {
    /// From `(template, methods)` pairs such as `("/todos/{id}", ["GET", "PATCH"])`.
    pub fn new(routes: impl IntoIterator<Item = (String, Vec<String>)>) -> Routes {
        Routes(
            routes
                .into_iter()
                .map(|(text, methods)| {
                    let segments: Vec<Segment> = text
                        .split('/')
                        .map(|s| {
                            if s.starts_with('{') && s.ends_with('}') {
                                Segment::Param
                            } else {
                                Segment::Fixed(s.to_owned())
                            }
                        })
                        .collect();
                    let fixed = segments
                        .iter()
                        .filter(|s| matches!(s, Segment::Fixed(_)))
                        .count();
                    Template {
                        text,
                        segments,
                        fixed,
                        methods,
                    }
                })
                .collect(),
        )
    }

    /// The templates, in the order [`find`](Self::find) numbers them.
    pub fn templates(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|t| t.text.as_str())
    }

    /// Template number `i`.
    pub fn template(&self, i: usize) -> &str {
        &self.0[i].text
    }

    /// The number of the template `path` falls under, if any; the one with
    /// the most fixed segments when several do. Runs on every request, so it
    /// allocates nothing.
    pub fn find(&self, path: &str) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (i, template) in self.0.iter().enumerate() {
            if template.matches(path) && best.is_none_or(|(_, fixed)| template.fixed > fixed) {
                best = Some((i, template.fixed));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The methods the template of `path` takes; `GET` for a path under none.
    pub fn allowed(&self, path: &str) -> Vec<String> {
        self.find(path)
            .map(|i| self.0[i].methods.clone())
            .unwrap_or_else(|| vec!["GET".into()])
    }
}

impl Template {
    fn matches(&self, path: &str) -> bool {
        let mut parts = path.split('/');
        for segment in &self.segments {
            match (segment, parts.next()) {
                (Segment::Fixed(text), Some(part)) if text == part => {}
                (Segment::Param, Some(part)) if !part.is_empty() => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        Routes::new([
            ("/todos".to_owned(), vec!["GET".into(), "POST".into()]),
            (
                "/todos/{id}".to_owned(),
                vec!["GET".into(), "DELETE".into()],
            ),
            ("/me".to_owned(), vec!["GET".into()]),
            ("/me/{what}".to_owned(), vec!["PUT".into()]),
            ("/me/sign-out".to_owned(), vec!["POST".into()]),
        ])
    }

    #[test]
    fn a_path_is_matched_against_the_templates_for_its_allowed_methods() {
        let routes = routes();
        assert_eq!(routes.allowed("/todos"), ["GET", "POST"]);
        assert_eq!(routes.allowed("/todos/abc"), ["GET", "DELETE"]);
        assert_eq!(routes.allowed("/todos/abc/x"), ["GET"]);
    }

    #[test]
    fn a_path_falls_under_one_template_and_fixed_text_beats_a_parameter() {
        let routes = routes();
        let template = |path| routes.find(path).map(|i| routes.0[i].text.as_str());
        assert_eq!(template("/todos"), Some("/todos"));
        assert_eq!(template("/todos/0190a5d0"), Some("/todos/{id}"));
        assert_eq!(template("/me/sign-out"), Some("/me/sign-out"));
        assert_eq!(template("/me/password"), Some("/me/{what}"));
        assert_eq!(template("/todos/"), None, "a parameter is never empty");
        assert_eq!(template("/todos/a/b"), None);
        assert_eq!(template("/nothing"), None);
        assert_eq!(template(""), None);
    }
}

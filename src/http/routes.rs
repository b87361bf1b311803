//! The path templates the app serves (`/todos/{id}`) and the methods each
//! takes: which template a request's path falls under, for a `405` to name
//! the methods (RFC 9110 §15.5.6) and for the request log and histogram to
//! name the route without the ids in it.

use std::collections::HashMap;

/// Every template, in the order given.
pub struct Routes {
    templates: Vec<Template>,
    /// The templates without a parameter, by their text: most paths are
    /// one of these, found with one hash.
    fixed: HashMap<String, usize>,
    /// The numbers of the templates with a parameter.
    with_params: Vec<usize>,
}

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

/// The most segments a template may have (`/admin/users/{id}/keys` has
/// five, counting the empty one before the first slash); a deeper path
/// falls under none.
const MAX_SEGMENTS: usize = 16;

impl Routes {
    /// From `(template, methods)` pairs such as `("/todos/{id}", ["GET", "PATCH"])`.
    pub fn new(routes: impl IntoIterator<Item = (String, Vec<String>)>) -> Routes {
        let templates: Vec<Template> = routes
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
                assert!(segments.len() <= MAX_SEGMENTS, "{text} is too deep");
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
            .collect();
        let (all_fixed, with_params): (Vec<usize>, Vec<usize>) =
            (0..templates.len()).partition(|&i| templates[i].fixed == templates[i].segments.len());
        let mut fixed = HashMap::new();
        for i in all_fixed {
            fixed.entry(templates[i].text.clone()).or_insert(i);
        }
        Routes {
            templates,
            fixed,
            with_params,
        }
    }

    /// The templates, in the order [`find`](Self::find) numbers them.
    pub fn templates(&self) -> impl Iterator<Item = &str> {
        self.templates.iter().map(|t| t.text.as_str())
    }

    /// Template number `i`.
    pub fn template(&self, i: usize) -> &str {
        &self.templates[i].text
    }

    /// The number of the template `path` falls under, if any; the one with
    /// the most fixed segments when several do. Runs on every request, so
    /// it allocates nothing: a template without a parameter is one hash
    /// away, and only for other paths is the path split, onto the stack,
    /// and compared with the templates that have one.
    pub fn find(&self, path: &str) -> Option<usize> {
        if let Some(&i) = self.fixed.get(path) {
            return Some(i);
        }
        let mut parts = [""; MAX_SEGMENTS];
        let mut depth = 0;
        for part in path.split('/') {
            *parts.get_mut(depth)? = part;
            depth += 1;
        }
        let parts = &parts[..depth];
        let mut best: Option<(usize, usize)> = None;
        for &i in &self.with_params {
            let template = &self.templates[i];
            if template.matches(parts) && best.is_none_or(|(_, fixed)| template.fixed > fixed) {
                best = Some((i, template.fixed));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The methods the template of `path` takes; `GET` for a path under none.
    pub fn allowed(&self, path: &str) -> Vec<String> {
        self.find(path)
            .map(|i| self.templates[i].methods.clone())
            .unwrap_or_else(|| vec!["GET".into()])
    }
}

impl Template {
    fn matches(&self, parts: &[&str]) -> bool {
        self.segments.len() == parts.len()
            && self
                .segments
                .iter()
                .zip(parts)
                .all(|(segment, part)| match segment {
                    Segment::Fixed(text) => text == part,
                    Segment::Param => !part.is_empty(),
                })
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
            ("/{kind}/{id}/x".to_owned(), vec!["GET".into()]),
            ("/todos/{id}/x".to_owned(), vec!["GET".into()]),
        ])
    }

    #[test]
    fn a_path_is_matched_against_the_templates_for_its_allowed_methods() {
        let routes = routes();
        assert_eq!(routes.allowed("/todos"), ["GET", "POST"]);
        assert_eq!(routes.allowed("/todos/abc"), ["GET", "DELETE"]);
        assert_eq!(routes.allowed("/todos/abc/y"), ["GET"]);
    }

    #[test]
    fn a_path_falls_under_one_template_and_fixed_text_beats_a_parameter() {
        let routes = routes();
        let deep = "/todos".repeat(40);
        let template = |path: &str| routes.find(path).map(|i| routes.template(i).to_owned());
        for (path, expected) in [
            ("/todos", Some("/todos")),
            ("/todos/0190a5d0", Some("/todos/{id}")),
            ("/me/sign-out", Some("/me/sign-out")),
            ("/me/password", Some("/me/{what}")),
            ("/todos/0190a5d0/x", Some("/todos/{id}/x")),
            ("/keys/0190a5d0/x", Some("/{kind}/{id}/x")),
            ("/todos/", None),
            ("/todos//x", None),
            ("/todos/a/b", None),
            (deep.as_str(), None),
            ("/nothing", None),
            ("", None),
        ] {
            assert_eq!(template(path).as_deref(), expected, "{path}");
        }
    }
}

//! HTTP routes as Spin writes them: exact paths, `:name` segments and a trailing `/...`
//! wildcard. The most specific route wins, as in Spin.

/// One parsed route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pattern: String,
    segments: Vec<Segment>,
    trailing_wildcard: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// What a request path matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub route: &'a Route,
    /// The path after the route's fixed part (`spin-path-info`), empty for an exact route.
    pub path_info: String,
    /// Values of `:name` segments, in order.
    pub params: Vec<(String, String)>,
}

impl Route {
    pub fn parse(pattern: &str) -> Result<Route, String> {
        if !pattern.starts_with('/') {
            return Err(format!("`{pattern}` must start with `/`"));
        }
        let (body, trailing_wildcard) = match pattern.strip_suffix("/...") {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        let mut segments = Vec::new();
        for segment in body.split('/').skip(1) {
            if segment.is_empty() {
                // `/` alone, or a trailing slash: nothing to match.
                continue;
            }
            if segment == "..." || segment.contains("...") {
                return Err(format!(
                    "`{pattern}`: `...` is only allowed as the last segment"
                ));
            }
            match segment.strip_prefix(':') {
                Some("") => return Err(format!("`{pattern}`: a `:` segment needs a name")),
                Some(name) => segments.push(Segment::Param(name.to_owned())),
                None => segments.push(Segment::Literal(segment.to_owned())),
            }
        }
        Ok(Route {
            pattern: pattern.to_owned(),
            segments,
            trailing_wildcard,
        })
    }

    /// The route as written in the manifest (`spin-matched-route`, `spin-raw-component-route`).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The route without its trailing wildcard (`spin-component-route`).
    pub fn without_wildcard(&self) -> &str {
        if self.trailing_wildcard {
            &self.pattern[..self.pattern.len() - 4]
        } else {
            &self.pattern
        }
    }

    fn matches(&self, path: &str) -> Option<RouteMatch<'_>> {
        let mut rest = path;
        let mut params = Vec::new();
        for segment in &self.segments {
            let after_slash = rest.strip_prefix('/')?;
            let end = after_slash.find('/').unwrap_or(after_slash.len());
            let value = &after_slash[..end];
            match segment {
                Segment::Literal(literal) if literal == value => {}
                Segment::Literal(_) => return None,
                Segment::Param(_) if value.is_empty() => return None,
                Segment::Param(name) => params.push((name.clone(), value.to_owned())),
            }
            rest = &after_slash[end..];
        }
        if self.trailing_wildcard {
            // `/foo/...` matches `/foo` and `/foo/anything`, not `/foobar`.
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
        } else if !(rest.is_empty() || rest == "/") {
            return None;
        }
        let path_info = if self.trailing_wildcard {
            rest.to_owned()
        } else {
            String::new()
        };
        Some(RouteMatch {
            route: self,
            path_info,
            params,
        })
    }

    /// Higher is more specific: exact beats wildcard, literals beat parameters, longer beats
    /// shorter.
    fn specificity(&self) -> (bool, usize, usize) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (!self.trailing_wildcard, self.segments.len(), literals)
    }
}

/// Routes to component names.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<(Route, String)>,
}

impl Router {
    pub fn new(mut routes: Vec<(Route, String)>) -> Router {
        routes.sort_by_key(|(route, _)| std::cmp::Reverse(route.specificity()));
        Router { routes }
    }

    /// Every route and its component, most specific first.
    pub fn describe(&self) -> Vec<(String, String)> {
        self.routes
            .iter()
            .map(|(route, component)| (route.pattern().to_owned(), component.clone()))
            .collect()
    }

    /// The most specific route that matches `path`, and its component.
    pub fn route(&self, path: &str) -> Option<(RouteMatch<'_>, &str)> {
        self.routes
            .iter()
            .find_map(|(route, component)| route.matches(path).map(|m| (m, component.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        Router::new(
            routes
                .iter()
                .map(|(r, c)| (Route::parse(r).unwrap(), c.to_string()))
                .collect(),
        )
    }

    #[test]
    fn precedence_and_path_info() {
        let r = router(&[
            ("/...", "fallback"),
            ("/api/...", "api"),
            ("/api/jobs", "jobs"),
            ("/users/:id/...", "user"),
        ]);
        let cases = [
            ("/", "fallback", "/"),
            ("/anything/else", "fallback", "/anything/else"),
            ("/api", "api", ""),
            ("/api/", "api", "/"),
            ("/api/x/y", "api", "/x/y"),
            ("/api/jobs", "jobs", ""),
            ("/apix", "fallback", "/apix"),
            ("/users/42/avatar", "user", "/avatar"),
        ];
        for (path, component, info) in cases {
            let (m, c) = r.route(path).unwrap();
            assert_eq!((c, m.path_info.as_str()), (component, info), "{path}");
        }
        let (m, _) = r.route("/users/42").unwrap();
        assert_eq!(m.params, [("id".to_owned(), "42".to_owned())]);
    }

    #[test]
    fn no_match_without_fallback() {
        let r = router(&[("/hello", "h"), ("/api/...", "a")]);
        assert!(r.route("/hello/more").is_none());
        assert!(r.route("/").is_none());
        assert!(r.route("/hello").is_some());
        assert!(r.route("/hello/").is_some());
    }

    #[test]
    fn component_route() {
        assert_eq!(Route::parse("/foo/...").unwrap().without_wildcard(), "/foo");
        assert_eq!(Route::parse("/...").unwrap().without_wildcard(), "");
        assert_eq!(Route::parse("/hello").unwrap().without_wildcard(), "/hello");
    }

    #[test]
    fn bad_routes() {
        for bad in ["hello", "/a/.../b", "/:", ""] {
            assert!(Route::parse(bad).is_err(), "{bad}");
        }
    }
}

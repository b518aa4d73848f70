//! The crate's one error type.

/// Everything that can go wrong while parsing rules or manifests and building a table.
///
/// Each variant names what it is about (the rule text and column, the router, the manifest file,
/// the Ingress) so a single line on stderr is enough to find the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// A Traefik rule did not parse; `column` is 1-based and counts characters.
    #[error("rule `{rule}`: column {column}: {message}")]
    Rule {
        /// The rule text as given.
        rule: String,
        /// 1-based character column of the problem.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// A file-provider router is invalid (bad rule, duplicate name, ...).
    #[error("router `{router}`: {message}")]
    Router {
        /// The router's name.
        router: String,
        /// What is wrong with it (includes the rule error, if any).
        message: String,
    },
    /// A manifest document (YAML or JSON) could not be read.
    #[error("{origin}: {message}")]
    Manifest {
        /// Where the document came from (file name, document index).
        origin: String,
        /// What is wrong with it.
        message: String,
    },
}

impl RouterError {
    /// The 1-based column of a rule parse error, if this is one.
    pub fn column(&self) -> Option<usize> {
        match self {
            RouterError::Rule { column, .. } => Some(*column),
            _ => None,
        }
    }
}

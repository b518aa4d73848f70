//! `[acme]` section: resolvers and wanted certificates (filled in by the acme-issuer issue).

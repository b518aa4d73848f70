//! Kubernetes glue for Fairway (work in progress).

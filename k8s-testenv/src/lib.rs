//! Real etcd + kube-apiserver for tests (work in progress).

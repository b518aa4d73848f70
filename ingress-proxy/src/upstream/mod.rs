//! The upstream side: endpoints, load balancing, health and the pooled client.

pub(crate) mod balancer;
pub(crate) mod client;
pub(crate) mod endpoint;
pub(crate) mod h1codec;
pub(crate) mod h1conn;
pub(crate) mod h1pool;
pub(crate) mod health;
pub(crate) mod service;

pub use balancer::Balancer;
pub use endpoint::Endpoint;
pub use health::PassiveState;

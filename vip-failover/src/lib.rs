//! `vip-failover`: see the crate README. (Skeleton: the first code lands with its issue.)

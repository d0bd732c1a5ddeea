//! The store's connection for writes and small commands: one Redis (the `redis`
//! crate's self-reconnecting connection manager) or a Redis Cluster (its cluster
//! client, which routes each command by key and follows the cluster's topology).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// A connection to the store's Redis, for other modules that keep data there (the
/// plugin registry) and for raw commands. Cheap to clone: clones share one
/// multiplexed connection (per node, on a cluster).
///
/// It is a [`redis::aio::ConnectionLike`], so `redis::AsyncCommands` work on it. On a
/// cluster each command goes to the node serving its key; a command or pipeline
/// whose keys are in different hash slots fails with `CROSSSLOT`, and `MULTI`
/// (atomic pipelines) only works when all its keys share one slot.
#[derive(Clone)]
pub struct Connection(pub(crate) Con);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub(crate) enum Con {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Con::Cluster(_))
    }

    /// Runs `cmd` on the master that serves `key`'s slot (on one Redis: runs it), for
    /// commands without a key of their own that must reach that node (`WAIT`).
    pub(crate) async fn query_at<T: redis::FromRedisValue>(
        &mut self,
        key: &str,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        match &mut self.0 {
            Con::Single(c) => cmd.query_async(c).await,
            Con::Cluster(c) => {
                let route = Route::new(crate::cluster::slot_of(key.as_bytes()), SlotAddr::Master);
                let value = c
                    .route_command(
                        cmd.clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                redis::from_redis_value(value).map_err(Into::into)
            }
        }
    }

    /// Runs `cmd` on the node at `host:port` (on one Redis: runs it): `SCAN`, whose
    /// cursor belongs to one node.
    pub(crate) async fn query_on<T: redis::FromRedisValue>(
        &mut self,
        node: Option<&crate::cluster::Node>,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        match (&mut self.0, node) {
            (Con::Cluster(c), Some((host, port))) => {
                let value = c
                    .route_command(
                        cmd.clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        }),
                    )
                    .await?;
                redis::from_redis_value(value).map_err(Into::into)
            }
            (Con::Single(c), _) => cmd.query_async(c).await,
            (Con::Cluster(c), None) => cmd.query_async(c).await,
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Con::Single(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Con::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Con::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Con::Single(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }
}

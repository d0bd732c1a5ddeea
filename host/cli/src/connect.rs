//! The store and the runtime as the global flags configure them.

use anyhow::Result;
use streamfold::{EventStore, Instances, Limits, Runtime, RuntimeConfig, StoreConfig, TlsConfig};

use crate::commands::Global;
use crate::exit::Explained;

/// `--prefix`, `--layout`, `--cluster`, `--durability`, `--partitions`,
/// `--category-max-len` and the
/// `--tls-*` flags (their files read and checked).
pub(crate) fn store_config(g: &Global) -> Result<StoreConfig> {
    let mut config = StoreConfig::default()
        .prefix(g.prefix.clone())
        .layout(g.layout)
        .cluster(g.cluster)
        .durability(g.durability)
        .category_max_len(g.category_max_len)
        .tls(tls_config(g)?);
    for (t, n) in &g.partitions {
        config = config.partitions_for(t.clone(), *n);
    }
    Ok(config)
}

/// The `--tls-*` flags: files that cannot be read or are not PEM are usage errors
/// naming the file (never a key's contents).
fn tls_config(g: &Global) -> Result<TlsConfig> {
    let mut tls = TlsConfig::default().insecure(g.tls_insecure);
    if let Some(ca) = &g.tls_ca {
        tls = tls.ca_file(ca)?;
    }
    tls = match (&g.tls_cert, &g.tls_key) {
        (None, None) => tls,
        (Some(cert), Some(key)) => tls.client_identity_files(cert, key)?,
        (Some(_), None) => {
            return Err(Explained::usage(
                "--tls-cert needs --tls-key (STREAMFOLD_TLS_KEY), the certificate's private key",
            )
            .into());
        }
        (None, Some(_)) => {
            return Err(Explained::usage(
                "--tls-key needs --tls-cert (STREAMFOLD_TLS_CERT), the certificate it goes with",
            )
            .into());
        }
    };
    Ok(tls)
}

/// Connects to `--redis` with `--prefix`, `--layout` and the `--tls-*` flags.
pub(crate) async fn store(g: &Global) -> Result<EventStore> {
    Ok(EventStore::connect(&g.redis, store_config(g)?).await?)
}

/// The runtime's settings: the reducer limits and the cache folder from the flags.
pub(crate) fn runtime_config(g: &Global) -> RuntimeConfig {
    let limits = Limits::default()
        .call_timeout(g.call_timeout)
        .memory_bytes(g.memory_limit);
    let mut config = RuntimeConfig::default()
        .limits(limits)
        .projection_lease_ttl(g.projection_lease)
        .projection_cache_bytes(g.projection_cache)
        .state_cache_bytes(g.state_cache);
    if g.fresh_instances {
        config = config.instances(Instances::Fresh);
    }
    match &g.cache_dir {
        Some(dir) => config.cache_dir(Some(dir.clone())),
        None => config,
    }
}

/// Connects and starts a runtime over the store.
pub(crate) async fn runtime(g: &Global) -> Result<Runtime> {
    let store = store(g).await?;
    Ok(Runtime::new(store, runtime_config(g))?)
}

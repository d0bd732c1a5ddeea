//! The sandbox every plugin runs in, whatever its kind: the engine, the per-call
//! store, its limits, log budgets and an empty, deterministic WASI context; and the
//! reducer's `log` import.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{self, Level};
use crate::text;

/// Limits on what one plugin may use, reducer or projection. Every limit fails the
/// one session (or batch) that hits it, with an error naming the plugin and the
/// events; the host process goes on serving.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// Wall-clock time one call into a reducer may take (one batch of events, or
    /// `state`, or instantiation): an epoch deadline, not a CPU budget, so a
    /// reducer on a busy machine gets less work done in it. Epoch interruption
    /// costs far less than fuel on a tight replay loop (DESIGN.md). Default 5 s.
    pub call_timeout: Duration,
    /// Linear memory one reducer instance may grow to. Default 256 MiB: Python
    /// and JavaScript components start at tens of MiB.
    pub memory_bytes: usize,
    /// Largest `.wasm` accepted at registration. Default 64 MiB.
    pub component_bytes: usize,
    /// Longest log line kept from a reducer; longer lines are cut. Default 4 KiB.
    pub log_line_bytes: usize,
    /// Log lines kept per session (per batch for a projection); the rest are
    /// counted and dropped. Default 1,000.
    pub log_lines_per_replay: usize,
    /// What one batch of a projection may read and write.
    pub read_model: ReadModelLimits,
}

/// Bounds on what one batch of a projection may do to its read model. A batch that
/// breaks one fails (nothing of it is written) with
/// [`FailureCause::WriteLimit`](crate::FailureCause::WriteLimit) naming the bound.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadModelLimits {
    /// Longest key, in bytes (keys must also be non-empty, without control
    /// characters). Default 512.
    pub key_bytes: usize,
    /// Largest document one `put` may store, in bytes. Default 1 MiB.
    pub document_bytes: usize,
    /// Most `put` and `delete` calls in one batch. Default 100,000.
    pub writes_per_batch: usize,
    /// Most bytes (keys and documents) in a batch's final write set: what one
    /// commit writes. Default 16 MiB.
    pub write_bytes_per_batch: usize,
    /// Most `get` calls in one batch. Default 100,000.
    pub reads_per_batch: usize,
}

impl Default for ReadModelLimits {
    fn default() -> Self {
        ReadModelLimits {
            key_bytes: 512,
            document_bytes: 1 << 20,
            writes_per_batch: 100_000,
            write_bytes_per_batch: 16 << 20,
            reads_per_batch: 100_000,
        }
    }
}

impl ReadModelLimits {
    /// Sets [`ReadModelLimits::key_bytes`].
    pub fn key_bytes(mut self, n: usize) -> Self {
        self.key_bytes = n;
        self
    }
    /// Sets [`ReadModelLimits::document_bytes`].
    pub fn document_bytes(mut self, n: usize) -> Self {
        self.document_bytes = n;
        self
    }
    /// Sets [`ReadModelLimits::writes_per_batch`].
    pub fn writes_per_batch(mut self, n: usize) -> Self {
        self.writes_per_batch = n;
        self
    }
    /// Sets [`ReadModelLimits::write_bytes_per_batch`].
    pub fn write_bytes_per_batch(mut self, n: usize) -> Self {
        self.write_bytes_per_batch = n;
        self
    }
    /// Sets [`ReadModelLimits::reads_per_batch`].
    pub fn reads_per_batch(mut self, n: usize) -> Self {
        self.reads_per_batch = n;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_timeout: Duration::from_secs(5),
            memory_bytes: 256 << 20,
            component_bytes: 64 << 20,
            log_line_bytes: 4096,
            log_lines_per_replay: 1000,
            read_model: ReadModelLimits::default(),
        }
    }
}

impl Limits {
    /// Sets [`Limits::call_timeout`].
    pub fn call_timeout(mut self, t: Duration) -> Self {
        self.call_timeout = t;
        self
    }
    /// Sets [`Limits::memory_bytes`].
    pub fn memory_bytes(mut self, bytes: usize) -> Self {
        self.memory_bytes = bytes;
        self
    }
    /// Sets [`Limits::component_bytes`].
    pub fn component_bytes(mut self, bytes: usize) -> Self {
        self.component_bytes = bytes;
        self
    }
    /// Sets [`Limits::read_model`].
    pub fn read_model(mut self, limits: ReadModelLimits) -> Self {
        self.read_model = limits;
        self
    }
    /// Sets [`Limits::log_line_bytes`].
    pub fn log_line_bytes(mut self, bytes: usize) -> Self {
        self.log_line_bytes = bytes;
        self
    }
}

/// How often the engine's epoch advances. A call's budget is rounded up to ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Builds the process-wide engine: tuned for many short-lived instances.
pub(crate) fn engine(
    limits: &Limits,
    pooling: bool,
    keep_resident: usize,
) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Deep recursion in a plugin must trap cleanly, never exhaust the host stack: the
    // wasm stack lives on the calling thread's, so it must leave room for the host's
    // own frames. Tokio's threads (blocking ones included) have 2 MiB; 2 MiB here let
    // a JavaScript reducer parsing a 20,000-deep payload abort the whole process.
    config.max_wasm_stack(1 << 20);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        // Sized for a 2-core host replaying tens of aggregates at once, with room
        // for JavaScript and Python components (several core instances, large
        // tables). Slots are virtual memory, touched only when used.
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(512)
            .total_tables(1024)
            .total_stacks(256)
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(64)
            .max_core_instance_size(4 << 20)
            .max_component_instance_size(4 << 20)
            .table_elements(200_000)
            .max_memory_size(limits.memory_bytes)
            // Idle slots remember their last reducer; each keeps up to
            // `keep_resident` bytes of memory mapped (RuntimeConfig::keep_resident_bytes).
            .max_unused_warm_slots(16)
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(keep_resident.min(1 << 20));
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Ok(Engine::new(&config)?)
}

/// An engine and the clock its call deadlines run on: what every store is made from.
#[derive(Clone)]
pub(crate) struct Machine {
    pub(crate) engine: Engine,
    pub(crate) clock: Arc<Clock>,
}

impl Machine {
    /// `engine`, with a clock of its own (a thread that advances its epoch).
    pub(crate) fn new(engine: Engine) -> Machine {
        let clock = Arc::new(Clock::start(&engine));
        Machine { engine, clock }
    }
}

/// A hold on an [`EpochClock`]: the machine and every store have one, and the
/// clock's thread ends when the last is dropped (no call into a plugin can be made
/// any more).
pub(crate) struct Clock(Arc<EpochClock>);

impl Clock {
    fn start(engine: &Engine) -> Clock {
        let clock = Arc::new(EpochClock::default());
        let (weak, own) = (engine.weak(), clock.clone());
        std::thread::Builder::new()
            .name("streamfold-epoch".into())
            .spawn(move || own.run(&weak))
            .expect("spawning the epoch thread");
        Clock(clock)
    }

    /// A clock with no thread: for host state made without an engine, in tests.
    #[cfg(test)]
    pub(crate) fn unstarted() -> Arc<Clock> {
        Arc::new(Clock(Arc::default()))
    }

    /// Whether a deadline lies ahead (the clock ticks).
    pub(crate) fn is_running(&self) -> bool {
        self.0.is_running()
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        let clock = &self.0;
        clock.closed.store(true, Ordering::SeqCst);
        let _guard = clock.sleeping.lock().unwrap_or_else(|e| e.into_inner());
        clock.wake.notify_one();
    }
}

/// Advances an engine's epoch every [`EPOCH_TICK`] while a call into a plugin may be
/// running, and sleeps otherwise, so that an idle host does not wake up 200 times a
/// second.
///
/// Every call into a guest is armed first ([`arm_deadline`]): its deadline is the
/// epoch then plus its budget in ticks, and arming asks the clock to run until the
/// epoch has passed that deadline. So the clock stops only once every deadline ever
/// armed has been reached: a call still running then is interrupted at once, and a
/// stopped clock can never leave a loop in a plugin running.
#[derive(Default)]
pub(crate) struct EpochClock {
    /// Ticks so far; the engine's epoch is this, or one more during a tick.
    ticks: AtomicU64,
    /// Tick until `ticks` reaches this.
    until: AtomicU64,
    /// Nothing holds the clock any more: its thread ends.
    closed: AtomicBool,
    sleeping: Mutex<()>,
    wake: Condvar,
}

impl EpochClock {
    /// The clock's thread: ticks while a deadline is ahead, sleeps otherwise.
    fn run(&self, engine: &wasmtime::EngineWeak) {
        loop {
            {
                let mut guard = self.sleeping.lock().unwrap_or_else(|e| e.into_inner());
                while !self.is_running() {
                    if self.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
            }
            std::thread::sleep(EPOCH_TICK);
            let Some(engine) = engine.upgrade() else {
                return;
            };
            engine.increment_epoch();
            self.ticks.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn is_running(&self) -> bool {
        self.ticks.load(Ordering::SeqCst) < self.until.load(Ordering::SeqCst)
    }

    /// Keeps the clock running for `ticks` more ticks (and one for the tick that may
    /// be under way): called after a deadline `ticks` ahead was set.
    fn run_for(&self, ticks: u64) {
        let now = self.ticks.load(Ordering::SeqCst);
        let target = now.saturating_add(ticks).saturating_add(1);
        let before = self.until.fetch_max(target, Ordering::SeqCst);
        if before <= now {
            // The clock is asleep, or about to be: wake it (under its lock, so that
            // it either sees the new target before it sleeps or gets this call).
            let _guard = self.sleeping.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_one();
        }
    }
}

/// The linker every reducer is instantiated with: our `host` interface, and WASI
/// (for toolchains that insist on importing it) backed by an empty context.
pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    bindings::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Ok(linker)
}

/// What a store carries for one session (a reducer's) or one batch (a
/// projection's): what every kind shares, and the kind's own host state `X`
/// (nothing for a reducer, the batch's read-model buffer for a projection).
pub(crate) struct HostState<X = ()> {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    log: LogContext,
    /// The clock the store's deadlines run on.
    clock: Arc<Clock>,
    /// The kind's own state.
    pub(crate) extra: X,
}

impl<X> std::fmt::Debug for HostState<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState").finish_non_exhaustive()
    }
}

/// Who is logging (for the tracing events a reducer's log lines become), and how
/// much more it may log.
pub(crate) struct LogContext {
    /// `name@version (sha256:…)`, from validated `info`.
    pub(crate) plugin: String,
    /// `type/id`.
    pub(crate) aggregate: String,
    pub(crate) max_bytes: usize,
    pub(crate) lines_left: usize,
    pub(crate) dropped: u64,
}

impl LogContext {
    /// Takes one line from the budget: the line cut and escaped, or `None` when the
    /// budget is spent (the line is counted as dropped).
    pub(crate) fn admit(&mut self, message: &str) -> Option<String> {
        if self.lines_left == 0 {
            self.dropped += 1;
            return None;
        }
        self.lines_left -= 1;
        Some(text::shown(message, self.max_bytes))
    }
}

impl<X> HostState<X> {
    pub(crate) fn new(limits: &Limits, log: LogContext, clock: Arc<Clock>, extra: X) -> Self {
        HostState {
            wasi: sandbox_wasi(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: limits.memory_bytes,
                hit: None,
            },
            log,
            clock,
            extra,
        }
    }

    pub(crate) fn log_mut(&mut self) -> &mut LogContext {
        &mut self.log
    }

    /// Readies a warm instance's state for the next session: its log context and
    /// budget. (An instance that hit a limit is never reused.)
    pub(crate) fn start_session(&mut self, log: LogContext) {
        self.log = log;
    }

    /// The memory request that broke the limit, if one did during this store's life.
    pub(crate) fn memory_limit_hit(&self) -> Option<usize> {
        self.limiter.hit
    }

    pub(crate) fn dropped_log_lines(&self) -> u64 {
        self.log.dropped
    }
}

/// A new store for one reducer session, with memory limits and an epoch deadline armed.
pub(crate) fn store(machine: &Machine, limits: &Limits, log: LogContext) -> Store<HostState> {
    store_with(machine, limits, log, ())
}

/// A new store carrying a kind's own host state `extra`, with memory limits and an
/// epoch deadline armed.
pub(crate) fn store_with<X: 'static>(
    machine: &Machine,
    limits: &Limits,
    log: LogContext,
    extra: X,
) -> Store<HostState<X>> {
    let state = HostState::new(limits, log, machine.clock.clone(), extra);
    let mut store = Store::new(&machine.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_trap();
    arm_deadline(&mut store, limits);
    store
}

/// Gives the next call into the guest a fresh time budget, and keeps the clock
/// running until it is spent.
pub(crate) fn arm_deadline<X>(store: &mut Store<HostState<X>>, limits: &Limits) {
    let ticks = limits
        .call_timeout
        .as_nanos()
        .div_ceil(EPOCH_TICK.as_nanos())
        .max(1);
    let ticks = u64::try_from(ticks).unwrap_or(u64::MAX);
    store.set_epoch_deadline(ticks);
    store.data().clock.0.run_for(ticks);
}

/// No files, sockets, environment or arguments; clocks stopped at the Unix epoch
/// and randomness from a fixed sequence, so the same history always replays to
/// the same state whatever the guest's language runtime does at start-up.
fn sandbox_wasi() -> WasiCtx {
    static SEED: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    let seed = SEED.get_or_init(|| Arc::new((0u8..=255).collect()));
    wasmtime_wasi::WasiCtxBuilder::new()
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .secure_random(wasmtime_wasi::Deterministic::new(seed.to_vec()))
        .insecure_random(wasmtime_wasi::Deterministic::new(seed.to_vec()))
        .insecure_random_seed(0)
        .build()
}

struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

impl<X: Send + 'static> WasiView for HostState<X> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let Some(message) = self.log.admit(&message) else {
            return;
        };
        let log = &self.log;
        let (plugin, aggregate) = (log.plugin.as_str(), log.aggregate.as_str());
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(target: "streamfold::reducer", $level, plugin, aggregate, "{message}")
            };
        }
        match level {
            Level::Trace => emit!(tracing::Level::TRACE),
            Level::Debug => emit!(tracing::Level::DEBUG),
            Level::Info => emit!(tracing::Level::INFO),
            Level::Warn => emit!(tracing::Level::WARN),
            Level::Error => emit!(tracing::Level::ERROR),
        }
    }
}

// The `types` interface holds only types; its (empty) host trait still needs an impl.
impl bindings::TypesHost for HostState {}

/// Refuses memory growth past the limit, and remembers that it did, so the
/// failure is reported as "memory limit" rather than as a bare trap.
struct MemoryLimiter {
    limit: usize,
    hit: Option<usize>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = Some(desired);
            wasmtime::bail!(
                "memory limit exceeded: the plugin asked for {desired} bytes, the limit is {}",
                self.limit
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a reducer growing one without bound is
        // as much a memory bomb as linear memory.
        if desired > 1_000_000 {
            self.hit = Some(desired);
            wasmtime::bail!("table limit exceeded: {desired} elements");
        }
        Ok(true)
    }
}

//! The `streamfold` binary, run for real against a private redis-server: output
//! shapes, exit statuses, import, plugins and the demo.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use streamfold_test_support::LocalRedis;

struct Cli {
    redis: LocalRedis,
    cache: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            redis: LocalRedis::start().expect("redis-server starts"),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_streamfold"));
        c.args(args)
            .env("STREAMFOLD_REDIS_URL", self.redis.url())
            .env("STREAMFOLD_CACHE_DIR", self.cache.path())
            .env_remove("STREAMFOLD_PREFIX")
            .env_remove("STREAMFOLD_LOG")
            .env_remove("RUST_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("the binary runs")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn register_user(&self) -> String {
        let file = self.cache.path().join("user.wasm");
        std::fs::copy(streamfold_tests::plugins::USER, &file).unwrap();
        self.ok(&["plugin", "add", file.to_str().unwrap(), "--json"])
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

#[test]
fn append_history_and_state_with_json_output() {
    let cli = Cli::new();
    let reg: Value = serde_json::from_str(&cli.register_user()).unwrap();
    assert_eq!(reg["name"], "user");
    assert_eq!(reg["active"], true);

    let out = cli.ok(&[
        "append",
        "user",
        "7",
        "UserCreated",
        r#"{"id":7,"name":"Bo","email":"bo@example.com","timestamp":"t1"}"#,
        "--expect",
        "no-stream",
        "--json",
    ]);
    let appended: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(appended["revision"], 1);
    assert!(appended["position"].as_str().unwrap().contains('-'));
    let id = appended["event_id"].as_str().unwrap().to_string();
    cli.ok(&[
        "append",
        "user",
        "7",
        "EmailChanged",
        r#"{"email":"bo@example.org","timestamp":"t2"}"#,
        "--expect",
        "1",
    ]);

    let history: Value =
        serde_json::from_str(&cli.ok(&["history", "user", "7", "--json"])).unwrap();
    let events = history.as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_id"], id);
    assert_eq!(
        events[0]["data"]["name"], "Bo",
        "data is embedded JSON, as the seed returns it"
    );
    for field in [
        "event_id",
        "aggregate_type",
        "aggregate_id",
        "event_type",
        "data",
        "timestamp",
        "version",
        "revision",
        "position",
    ] {
        assert!(events[1].get(field).is_some(), "missing {field}");
    }

    // stdout holds only the state document.
    let state: Value = serde_json::from_str(&cli.ok(&["state", "user", "7"])).unwrap();
    assert_eq!(state["email"], "bo@example.org");
    let at1: Value =
        serde_json::from_str(&cli.ok(&["state", "user", "7", "--at-revision", "1"])).unwrap();
    assert_eq!(at1["email"], "bo@example.com");
    let full: Value = serde_json::from_str(&cli.ok(&["state", "user", "7", "--json"])).unwrap();
    assert_eq!(full["revision"], 2);
    assert_eq!(full["reducer"]["name"], "user");
    assert_eq!(full["state"]["email"], "bo@example.org");

    // Retrying with the same event id writes nothing twice.
    let again: Value = serde_json::from_str(&cli.ok(&[
        "append",
        "user",
        "7",
        "UserCreated",
        r#"{"id":7,"name":"Bo","email":"bo@example.com","timestamp":"t1"}"#,
        "--expect",
        "no-stream",
        "--event-id",
        &id,
        "--json",
    ]))
    .unwrap();
    assert_eq!(again["already_appended"], true);
    assert_eq!(
        serde_json::from_str::<Value>(&cli.ok(&["history", "user", "7", "--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn exit_statuses() {
    let cli = Cli::new();
    cli.register_user();
    cli.ok(&[
        "append",
        "user",
        "1",
        "UserCreated",
        r#"{"id":1,"name":"A","email":"a","timestamp":"t"}"#,
    ]);

    let conflict = cli.run(&[
        "append",
        "user",
        "1",
        "NameChanged",
        r#"{"name":"B"}"#,
        "--expect",
        "5",
    ]);
    assert_eq!(code(&conflict), 3, "{}", text(&conflict.stderr));
    let msg = text(&conflict.stderr);
    assert!(
        msg.contains("expected 5") && msg.contains("actual 1"),
        "{msg}"
    );

    let missing = cli.run(&["state", "user", "nobody"]);
    assert_eq!(code(&missing), 4, "{}", text(&missing.stderr));
    assert_eq!(code(&cli.run(&["history", "user", "nobody"])), 4);
    let no_such_version = cli.run(&["plugin", "activate", "user", "0.9.9"]);
    assert_eq!(code(&no_such_version), 4);
    // The library says what is missing; the command line says what helps.
    let msg = text(&no_such_version.stderr);
    let lines: Vec<&str> = msg.lines().collect();
    assert_eq!(lines.len(), 2, "{msg}");
    assert!(lines[0].starts_with("error: "), "{msg}");
    assert_eq!(
        lines[1],
        "hint: `streamfold plugin list user` shows the registered versions"
    );
    let no_reducer = cli.run(&["state", "cart", "1"]);
    assert_eq!(code(&no_reducer), 4, "{}", text(&no_reducer.stderr));
    let msg = text(&no_reducer.stderr);
    let lines: Vec<&str> = msg.lines().collect();
    assert_eq!(lines.len(), 2, "{msg}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("active reducer"),
        "{msg}"
    );
    assert_eq!(
        lines[1],
        "hint: register one with `streamfold plugin add FILE.wasm`"
    );
    // Not found, with nothing to add.
    assert_eq!(text(&missing.stderr).lines().count(), 1);

    let bad_json = cli.run(&["append", "user", "1", "NameChanged", "{not json"]);
    assert_eq!(code(&bad_json), 2, "{}", text(&bad_json.stderr));
    assert_eq!(code(&cli.run(&["no-such-command"])), 2);
    assert_eq!(code(&cli.run(&["append", "user"])), 2);

    let not_wasm = cli.cache.path().join("not.wasm");
    std::fs::write(&not_wasm, b"hello").unwrap();
    let refused = cli.run(&["plugin", "add", not_wasm.to_str().unwrap()]);
    assert_eq!(code(&refused), 1);
    assert!(
        text(&refused.stderr).contains("not a WebAssembly file"),
        "{}",
        text(&refused.stderr)
    );

    // Unreachable Redis: status 1, one clear line naming the URL without its password.
    let down = cli
        .command(&["history", "user", "1"])
        .env("STREAMFOLD_REDIS_URL", "redis://:sekrit@127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(code(&down), 1);
    let msg = text(&down.stderr);
    assert!(
        msg.contains("cannot reach Redis") && !msg.contains("sekrit"),
        "{msg}"
    );
    for out in [
        &conflict,
        &missing,
        &no_such_version,
        &no_reducer,
        &bad_json,
        &refused,
        &down,
    ] {
        assert!(
            !text(&out.stderr).contains("panicked"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn import_reports_the_bad_line_and_writes_nothing_after_it() {
    let cli = Cli::new();
    let good = [
        r#"{"aggregate_type":"user","aggregate_id":1,"event_type":"UserCreated","data":{"id":1,"name":"A","email":"a","timestamp":"t"}}"#,
        r#"{"aggregate_type":"user","aggregate_id":"1","event_type":"NameChanged","data":{"name":"B"}}"#,
        r#"{"aggregate_type":"user","aggregate_id":"2","event_type":"UserCreated","data":{"id":2,"name":"C","email":"c","timestamp":"t"}}"#,
    ];
    let input = format!(
        "{}\n{}\n\n{}\n{{broken\n{}\n",
        good[0], good[1], good[2], good[0]
    );
    let out = cli.run_with_stdin(&["import", "-"], &input);
    // A bad line is invalid input: exit status 2, like every other.
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    let msg = text(&out.stderr);
    assert!(msg.contains("line 5"), "{msg}");
    assert!(msg.contains("3 events before line 5"), "{msg}");
    let h1: Value = serde_json::from_str(&cli.ok(&["history", "user", "1", "--json"])).unwrap();
    assert_eq!(
        h1.as_array().unwrap().len(),
        2,
        "the line after the bad one was not written"
    );
    let h2: Value = serde_json::from_str(&cli.ok(&["history", "user", "2", "--json"])).unwrap();
    assert_eq!(h2.as_array().unwrap().len(), 1);

    // A type Redis keys cannot hold stops the import at its own line too, not at
    // the append of its batch.
    let bad_type =
        r#"{"aggregate_type":"us er","aggregate_id":"3","event_type":"UserCreated","data":{}}"#;
    let user_3 = r#"{"aggregate_type":"user","aggregate_id":"3","event_type":"UserCreated","data":{"id":3,"name":"D","email":"d","timestamp":"t"}}"#;
    let out = cli.run_with_stdin(
        &["import", "-"],
        &format!("{user_3}\n{bad_type}\n{user_3}\n"),
    );
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    let msg = text(&out.stderr);
    assert!(
        msg.contains("line 2") && msg.contains("1 events before line 2"),
        "{msg}"
    );
    let h3: Value = serde_json::from_str(&cli.ok(&["history", "user", "3", "--json"])).unwrap();
    assert_eq!(h3.as_array().unwrap().len(), 1, "nothing after line 2");

    let file = cli.cache.path().join("events.ndjson");
    std::fs::write(&file, good.join("\n")).unwrap();
    let summary: Value =
        serde_json::from_str(&cli.ok(&["import", file.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(summary["events"], 3);
    assert_eq!(summary["aggregates"], 2);
}

#[test]
fn plugin_list_and_activate() {
    let cli = Cli::new();
    let user: Value = serde_json::from_str(&cli.register_user()).unwrap();
    let cart_file = cli.cache.path().join("cart.wasm");
    std::fs::copy(streamfold_tests::plugins::CART, &cart_file).unwrap();
    cli.ok(&[
        "plugin",
        "add",
        cart_file.to_str().unwrap(),
        "--no-activate",
    ]);
    let list: Value = serde_json::from_str(&cli.ok(&["plugin", "list", "--json"])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let cart = list.iter().find(|p| p["aggregate_type"] == "cart").unwrap();
    assert_eq!(cart["active"], false);
    let digest = cart["digest"].as_str().unwrap();
    cli.ok(&["plugin", "activate", "cart", &digest[..10]]);
    let human = cli.ok(&["plugin", "list"]);
    assert!(human.contains("cart") && human.contains("user"), "{human}");
    let list: Value = serde_json::from_str(&cli.ok(&["plugin", "list", "cart", "--json"])).unwrap();
    assert_eq!(list[0]["active"], true);
    // A reducer cannot be activated for a type it does not fold.
    let wrong = cli.run(&[
        "plugin",
        "activate",
        "cart",
        user["digest"].as_str().unwrap(),
    ]);
    assert_ne!(code(&wrong), 0);
}

#[test]
fn demo_runs_the_seed_story() {
    let cli = Cli::new();
    for _ in 0..2 {
        // Twice: the demo resets its own prefix, so it is repeatable on a shared Redis.
        let out = cli.ok(&["demo"]);
        assert!(
            out.contains("UserCreated") && out.contains("EmailChanged"),
            "{out}"
        );
        assert!(
            out.contains(r#""email": "alice.smith@example.com""#),
            "{out}"
        );
        let time_travel = out
            .split("Time travel")
            .nth(1)
            .expect("a time-travel section");
        assert!(
            time_travel.contains(r#""email": "alice@example.com""#),
            "{out}"
        );
        assert!(!time_travel.contains("email_updated_at"), "{out}");
    }
    let history: Value = serde_json::from_str(&cli.ok(&[
        "--prefix",
        "streamfold-demo",
        "history",
        "user",
        "1",
        "--json",
    ]))
    .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2);
}

#[test]
fn demo_starts_a_private_redis_when_none_answers() {
    let cli = Cli::new();
    let free_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = cli
        .command(&["demo", "--redis", &format!("redis://127.0.0.1:{free_port}")])
        .env_remove("STREAMFOLD_REDIS_URL")
        .output()
        .unwrap();
    // An explicit --redis that does not answer is an error, not a silent private server.
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    let out = cli
        .command(&["demo"])
        .env_remove("STREAMFOLD_REDIS_URL")
        .output()
        .unwrap();
    // With nothing at the default address it starts its own; with something there,
    // it uses it under its own prefix. Either way it succeeds.
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Time travel"));
}

fn add_users(cli: &Cli, n: usize) {
    for i in 0..n {
        cli.ok(&[
            "append",
            "user",
            &i.to_string(),
            "UserCreated",
            &format!(r#"{{"id":{i},"name":"u{i}","email":"u{i}@x","timestamp":"t"}}"#),
        ]);
    }
}

#[test]
fn plugin_verify_gates_activation() {
    let cli = Cli::new();
    cli.register_user();
    add_users(&cli, 12);
    let same = cli.cache.path().join("user.wasm");
    let out = cli.ok(&["plugin", "verify", same.to_str().unwrap()]);
    assert!(out.contains("agree: 12") && out.contains("PASS"), "{out}");

    // A version that changes states: exit status 5, with the first differing field.
    let v2 = streamfold_tests::plugins::USER_V2;
    let out = cli.run(&["plugin", "verify", v2, "--sample", "5", "--json"]);
    assert_eq!(code(&out), 5, "{}", text(&out.stderr));
    let report: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(report["checked"], 5);
    assert_eq!(report["differed"].as_array().unwrap().len(), 5);
    assert_eq!(report["differed"][0]["path"], "/id");

    // `plugin add --verify` refuses it, `--force` activates it anyway.
    let refused = cli.run(&["plugin", "add", v2, "--verify"]);
    assert_eq!(code(&refused), 5);
    let list: Value = serde_json::from_str(&cli.ok(&["plugin", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "nothing registered");
    let forced = cli.run(&["plugin", "add", v2, "--verify", "--force", "--all"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let state: Value = serde_json::from_str(&cli.ok(&["state", "user", "3"])).unwrap();
    assert_eq!(state["name"], "U3");

    // A candidate for another type.
    let cart = cli.cache.path().join("cart.wasm");
    std::fs::copy(streamfold_tests::plugins::CART, &cart).unwrap();
    assert_eq!(
        code(&cli.run(&["plugin", "verify", cart.to_str().unwrap(), "--type", "user"])),
        2
    );
}

#[test]
fn plugin_history_rollback_and_remove() {
    let cli = Cli::new();
    let v1: Value = serde_json::from_str(&cli.register_user()).unwrap();
    let v2: Value = serde_json::from_str(&cli.ok(&[
        "plugin",
        "add",
        streamfold_tests::plugins::USER_V2,
        "--json",
    ]))
    .unwrap();
    add_users(&cli, 1);
    assert_eq!(
        serde_json::from_str::<Value>(&cli.ok(&["state", "user", "0"])).unwrap()["name"],
        "U0"
    );
    cli.ok(&["plugin", "activate", "user", "0.1.0"]); // rollback by version
    assert_eq!(
        serde_json::from_str::<Value>(&cli.ok(&["state", "user", "0"])).unwrap()["name"],
        "u0"
    );

    let history: Value =
        serde_json::from_str(&cli.ok(&["plugin", "history", "user", "--json"])).unwrap();
    let digests: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["digest"].as_str().unwrap())
        .collect();
    let (d1, d2) = (
        v1["digest"].as_str().unwrap(),
        v2["digest"].as_str().unwrap(),
    );
    assert_eq!(digests, [d1, d2, d1]);

    let refused = cli.run(&["plugin", "remove", "user", d1]);
    assert_eq!(code(&refused), 2);
    assert!(
        text(&refused.stderr).contains("active reducer"),
        "{}",
        text(&refused.stderr)
    );
    cli.ok(&["plugin", "remove", "user", &d2[..12]]);
    let list: Value = serde_json::from_str(&cli.ok(&["plugin", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn watch_registers_and_reloads_a_folder() {
    let cli = Cli::new();
    add_users(&cli, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut watch = cli
        .command(&[
            "watch",
            "--plugins",
            dir.path().to_str().unwrap(),
            "--interval-ms",
            "50",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let name_of_user_0 = |cli: &Cli| -> Option<String> {
        let out = cli.run(&["state", "user", "0"]);
        out.status
            .success()
            .then(|| serde_json::from_str::<Value>(&text(&out.stdout)).unwrap()["name"].to_string())
    };
    let wait_for = |want: &str| {
        let t = std::time::Instant::now();
        while name_of_user_0(&cli).as_deref() != Some(want) {
            assert!(
                t.elapsed().as_secs() < 20,
                "watch never activated the reducer giving {want}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let file = dir.path().join("user.wasm");
    std::fs::copy(streamfold_tests::plugins::USER, &file).unwrap();
    wait_for("\"u0\"");
    // "Rebuild": the same file now holds another version.
    std::fs::copy(streamfold_tests::plugins::USER_V2, &file).unwrap();
    wait_for("\"U0\"");
    watch.kill().unwrap();
    watch.wait().unwrap();
}

#[test]
fn reducer_limits_come_from_the_command_line() {
    let cli = Cli::new();
    add_users(&cli, 1);
    cli.ok(&["plugin", "add", streamfold_tests::plugins::SPIN]);
    let out = cli.run(&["--call-timeout", "300ms", "state", "user", "0"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("time limit of 300ms (wall-clock)"), "{err}");

    cli.ok(&["plugin", "add", streamfold_tests::plugins::BOMB]);
    let out = cli.run(&["--memory-limit", "8MiB", "state", "user", "0"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("limit {} bytes", 8 << 20)), "{err}");

    let out = cli.run(&["--memory-limit", "lots", "state", "user", "0"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("not a size like 64MiB"));
}

#[test]
fn plugin_add_no_activate_verify_never_activates() {
    let cli = Cli::new();
    let v1: Value = serde_json::from_str(&cli.register_user()).unwrap();
    let v2 = streamfold_tests::plugins::USER_V2;
    let active_digest = |cli: &Cli| -> Vec<String> {
        let list: Value =
            serde_json::from_str(&cli.ok(&["plugin", "list", "user", "--json"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .filter(|p| p["active"] == true)
            .map(|p| p["digest"].as_str().unwrap().to_owned())
            .collect()
    };

    // No aggregates yet: the verification passes; the candidate is registered, and
    // stays inactive.
    let out = cli.ok(&["plugin", "add", v2, "--no-activate", "--verify", "--json"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "the report, then the registration: {out}");
    let report: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(report["differed"].as_array().unwrap().len(), 0, "{out}");
    let reg: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(reg["active"], false, "{out}");
    assert_ne!(reg["digest"], v1["digest"]);
    let list: Value = serde_json::from_str(&cli.ok(&["plugin", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "both registered");
    assert_eq!(active_digest(&cli), [v1["digest"].as_str().unwrap()]);

    add_users(&cli, 1);
    let name = |cli: &Cli| {
        serde_json::from_str::<Value>(&cli.ok(&["state", "user", "0"])).unwrap()["name"].clone()
    };
    assert_eq!(
        name(&cli),
        "u0",
        "the previous version is still the active one"
    );

    // Differences, forced: registered, still not activated.
    let human = cli.ok(&["plugin", "add", v2, "--no-activate", "--verify", "--force"]);
    assert!(
        human.contains("FAIL") && !human.contains("(active)"),
        "{human}"
    );
    assert_eq!(active_digest(&cli), [v1["digest"].as_str().unwrap()]);
    assert_eq!(name(&cli), "u0");
    // Differences, not forced: refused, and the message does not promise activation.
    let refused = cli.run(&["plugin", "add", v2, "--no-activate", "--verify"]);
    assert_eq!(code(&refused), 5);
    assert!(
        text(&refused.stderr).contains("--force to register anyway"),
        "{}",
        text(&refused.stderr)
    );
}

/// `streamfold ... | head`: the reader goes away, and the command ends quietly.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let cli = Cli::new();
    cli.register_user();
    // A history far longer than a pipe's buffer (64 KiB on Linux).
    let mut input = String::from(
        r#"{"aggregate_type":"user","aggregate_id":"1","event_type":"UserCreated","data":{"id":1,"name":"A","email":"a","timestamp":"t"}}"#,
    );
    for i in 0..2000 {
        input.push_str(&format!(
            "\n{{\"aggregate_type\":\"user\",\"aggregate_id\":\"1\",\"event_type\":\"NameChanged\",\"data\":{{\"name\":\"name number {i}, long enough to fill pipes\"}}}}"
        ));
    }
    let out = cli.run_with_stdin(&["import", "-"], &input);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let quiet = |what: &str, out: &Output| {
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert_eq!(code(out), 0, "{what}: {stderr}");
        assert!(stderr.trim().is_empty(), "{what}: {stderr}");
    };
    let spawn = |args: &[&str]| {
        cli.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // The reader is gone before anything is written.
    for args in [&["state", "user", "1"][..], &["history", "user", "1"]] {
        let mut child = spawn(args);
        drop(child.stdout.take());
        quiet(&format!("{args:?}"), &child.wait_with_output().unwrap());
    }

    // The reader goes away after the first bytes of a long output.
    for args in [
        &["history", "user", "1", "--json"][..],
        &["history", "user", "1"],
    ] {
        let mut child = spawn(args);
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 10];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout);
        quiet(&format!("{args:?}"), &child.wait_with_output().unwrap());
    }

    // Not cut short, the same output is complete (and longer than a pipe holds).
    let full = cli.ok(&["history", "user", "1", "--json"]);
    assert!(full.len() > 256 << 10, "{} bytes", full.len());
    assert_eq!(
        serde_json::from_str::<Value>(&full)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2001
    );
}

#[test]
fn reducer_log_lines_go_to_stderr_filtered_by_streamfold_log() {
    let cli = Cli::new();
    add_users(&cli, 1);
    cli.ok(&["plugin", "add", streamfold_tests::plugins::TRAP]);
    let log_line = "fixture-trap: about to panic on revision 1";
    let state = |env: &[(&str, &str)]| {
        let mut c = cli.command(&["state", "user", "0"]);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert_eq!(code(&out), 1, "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("error: ")),
            "{stderr}"
        );
        stderr
    };
    // Warnings and errors by default.
    let stderr = state(&[]);
    assert!(
        stderr.contains(log_line) && stderr.contains("streamfold::reducer"),
        "{stderr}"
    );
    assert!(!state(&[("STREAMFOLD_LOG", "off")]).contains(log_line));
    assert!(!state(&[("RUST_LOG", "off")]).contains(log_line));
    let stderr = state(&[
        ("RUST_LOG", "off"),
        ("STREAMFOLD_LOG", "streamfold::reducer=error"),
    ]);
    assert!(stderr.contains(log_line), "STREAMFOLD_LOG wins: {stderr}");

    // JSON logs: one object per line, the reducer's line with its plugin and aggregate.
    let stderr = state(&[("STREAMFOLD_LOG_FORMAT", "json")]);
    let line: Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["target"] == "streamfold::reducer")
        .unwrap_or_else(|| panic!("no JSON log line from the reducer: {stderr}"));
    assert_eq!(line["fields"]["message"], log_line, "{line}");
    assert_eq!(line["fields"]["aggregate"], "user/0", "{line}");
    assert!(
        line["fields"]["plugin"]
            .as_str()
            .is_some_and(|p| p.starts_with("fixture-trap@")),
        "{line}"
    );
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
}

#[test]
fn help_says_the_call_timeout_is_wall_clock_time() {
    let out = Command::new(env!("CARGO_BIN_EXE_streamfold"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.contains("Wall-clock time one call into a reducer may take"),
        "{help}"
    );
    assert!(
        help.lines().any(|l| l.trim_start().starts_with("append ")
            && l.ends_with("Append one event to an aggregate")),
        "{help}"
    );
    let plugin_help = Command::new(env!("CARGO_BIN_EXE_streamfold"))
        .args(["plugin", "--help"])
        .output()
        .unwrap();
    let plugin_help = text(&plugin_help.stdout);
    assert!(
        plugin_help.contains("Make a registered version the active reducer of a type"),
        "{plugin_help}"
    );
}

/// A code block of the README's "Run the host as a service", found by its first
/// line (`# example: NAME` or `// example: NAME`).
fn readme_example(name: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("the README");
    let mut blocks = readme.split("```").skip(1).step_by(2);
    blocks
        .find_map(|block| {
            let (_lang, body) = block.split_once('\n')?;
            let first = body.lines().next()?.trim();
            (first == format!("# example: {name}") || first == format!("// example: {name}"))
                .then(|| body.to_owned())
        })
        .unwrap_or_else(|| panic!("the README has no example {name:?}"))
}

/// `streamfold serve` on a free port; returns the child and its address, read from
/// the "listening on" line it prints.
fn serve(cli: &Cli, extra: &[&str]) -> (std::process::Child, String) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = cli
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("streamfold serve starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(Ok(addr.to_owned()));
            } else {
                let _ = tx.send(Err(line));
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(Ok(addr)) => return (child, addr),
            Ok(Err(line)) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("streamfold serve did not say where it listens: {seen:?}");
            }
        }
    }
}

fn run_example(program: &str, args: &[&str], sf: &str, dir: &std::path::Path) -> String {
    let out = Command::new(program)
        .args(args)
        .env("SF", sf)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn the_readmes_service_examples_run_against_a_real_server_which_drains_on_sigterm() {
    let cli = Cli::new();
    let (mut server, sf) = serve(&cli, &[]);
    // The curl example uploads the reducer from where plugins/build-rust.sh puts it.
    let dir = tempfile::tempdir().unwrap();
    let wasm_dir = dir.path().join("target/wasm32-unknown-unknown/plugin");
    std::fs::create_dir_all(&wasm_dir).unwrap();
    std::fs::copy(streamfold_tests::plugins::USER, wasm_dir.join("user.wasm")).unwrap();

    let curl = run_example(
        "bash",
        &["-euo", "pipefail", "-c", &readme_example("curl")],
        &sf,
        dir.path(),
    );
    // curl prints the bodies back to back: the plugin, two appends, two states.
    let bodies: Vec<Value> = serde_json::Deserializer::from_str(&curl)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}: {curl}"));
    assert_eq!(bodies.len(), 5, "{curl}");
    assert_eq!(bodies[0]["plugin"]["active"], true, "{curl}");
    assert_eq!(bodies[2]["last_revision"], 2, "{curl}");
    assert_eq!(bodies[3]["email"], "bo@example.org", "{curl}");
    assert_eq!(bodies[4]["email"], "bo@example.com", "time travel: {curl}");

    let python = run_example(
        "python3",
        &["-c", &readme_example("python")],
        &sf,
        dir.path(),
    );
    assert_eq!(
        python.trim(),
        "cy@example.com at revision 1\nevent UserCreated\ncaught up"
    );

    let js = run_example(
        "node",
        &["--input-type=module", "-e", &readme_example("js")],
        &sf,
        dir.path(),
    );
    assert_eq!(js.trim(), "409 no-stream 1\nDi");

    // SIGTERM: the server stops accepting, drains and exits 0.
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = server.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn serve_refuses_a_public_address_without_tokens() {
    let cli = Cli::new();
    let out = cli.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("without tokens") && err.contains("--insecure"),
        "{err}"
    );
}

#[test]
fn token_new_prints_a_token_and_a_line_holding_only_its_hash() {
    let cli = Cli::new();
    let out = cli.ok(&["token", "new", "--role", "write", "--types", "user,cart"]);
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("a token line");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("tokens file line: "))
        .expect("a tokens file line");
    assert!(token.starts_with("sft_"), "{out}");
    assert!(
        line.starts_with("sha256:") && line.ends_with(" write user,cart"),
        "{line}"
    );
    assert!(!line.contains(token), "{line}");
    let tokens = streamfold_server::Tokens::parse(line).unwrap();
    assert_eq!(
        tokens.check(token).map(|c| c.role),
        Some(streamfold_server::Role::Write)
    );
}

#[test]
fn serve_print_openapi_prints_the_document_without_redis() {
    let cli = Cli::new();
    // No Redis is needed: an unreachable one is never asked.
    let out = cli.ok(&[
        "--redis",
        "redis://127.0.0.1:1/",
        "serve",
        "--print-openapi",
    ]);
    let doc: Value = serde_json::from_str(&out).expect("the document is JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{out}");
    assert_eq!(
        doc,
        serde_json::to_value(streamfold_server::openapi()).unwrap(),
        "the same document the server serves"
    );
}

#[test]
fn tls_flags_connect_to_a_redis_that_speaks_only_tls() {
    use streamfold_test_support::ClientCerts;
    let server = LocalRedis::start_tls(ClientCerts::Required).expect("a TLS redis-server starts");
    let files = server.tls_files().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (ca, cert, key) = (
        path(&files.ca),
        path(&files.client_cert),
        path(&files.client_key),
    );
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_streamfold"))
            .args(["--redis", &server.url()])
            .args(args)
            .env("STREAMFOLD_CACHE_DIR", cache.path())
            .env_remove("STREAMFOLD_REDIS_URL")
            .env_remove("STREAMFOLD_PREFIX")
            .env_remove("STREAMFOLD_TLS_CA")
            .env_remove("STREAMFOLD_TLS_CERT")
            .env_remove("STREAMFOLD_TLS_KEY")
            .env_remove("STREAMFOLD_TLS_INSECURE")
            .output()
            .expect("the binary runs")
    };
    let tls = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
    let append = [
        "append",
        "user",
        "7",
        "UserCreated",
        r#"{"id":7}"#,
        "--json",
    ];
    let out = run(&[&tls[..], &append[..]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&[&tls[..], &["history", "user", "7", "--json"][..]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("UserCreated"),
        "{}",
        text(&out.stdout)
    );

    // --tls-insecure: no CA, a warning on stderr.
    let out = run(&[
        "--tls-insecure",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "history",
        "user",
        "7",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("insecure"),
        "{}",
        text(&out.stderr)
    );

    // Without the client certificate the server refuses the handshake.
    let out = run(&["--tls-ca", &ca, "history", "user", "7"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("TLS"), "{}", text(&out.stderr));
    // The wrong CA: a TLS error naming the reason.
    let other = path(&files.other_ca);
    let out = run(&[
        "--tls-ca",
        &other,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "history",
        "user",
        "7",
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("UnknownIssuer"),
        "{}",
        text(&out.stderr)
    );
    // A key without its certificate, a CA file that is not there: usage errors.
    let out = run(&["--tls-ca", &ca, "--tls-key", &key, "history", "user", "7"]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--tls-key needs --tls-cert"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["--tls-ca", "/nonexistent/ca.pem", "history", "user", "7"]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/nonexistent/ca.pem"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn cluster_durability_and_partition_flags_reach_the_store() {
    let cli = Cli::new();
    let cluster = streamfold_test_support::LocalCluster::start(3, 0).expect("a cluster starts");
    let url_list = cluster.url_list();
    let on_cluster = |args: &[&str]| {
        let mut all = vec!["--cluster", "--redis", url_list.as_str()];
        all.extend_from_slice(args);
        let out = cli.run(&all);
        (code(&out), text(&out.stdout), text(&out.stderr))
    };
    let (status, _, err) = on_cluster(&[
        "append",
        "order",
        "o1",
        "Placed",
        r#"{"n":1}"#,
        "--partitions",
        "order=4",
    ]);
    assert_eq!(status, 0, "{err}");
    let (status, out, err) = on_cluster(&[
        "history",
        "order",
        "o1",
        "--json",
        "--partitions",
        "order=4",
    ]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("\"Placed\""), "{out}");
    // Another count for the same type is refused, naming the recorded one.
    let (status, _, err) = on_cluster(&[
        "append",
        "order",
        "o1",
        "Placed",
        "{}",
        "--partitions",
        "order=2",
    ]);
    assert_ne!(status, 0);
    assert!(err.contains("first written with 4 partition(s)"), "{err}");
    // Several URLs without --cluster, and bad flag values, are usage errors.
    let out = cli.run(&["--redis", &url_list, "history", "order", "o1"]);
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("Redis Cluster"),
        "{}",
        text(&out.stderr)
    );
    for bad in [["--durability", "replicas=x"], ["--partitions", "order"]] {
        let out = cli.run(&[bad[0], bad[1], "history", "order", "o1"]);
        assert_eq!(code(&out), 2, "{bad:?}: {}", text(&out.stderr));
    }
    // replicas=1 on a cluster without replicas: stored, but not acknowledged.
    let (status, _, err) = on_cluster(&[
        "--durability",
        "replicas=1,timeout=100ms",
        "append",
        "user",
        "u1",
        "Created",
        "{}",
    ]);
    assert_ne!(status, 0);
    assert!(err.contains("0 of the 1 replicas"), "{err}");
}

#[test]
fn group_create_list_show_delete_round_trip() {
    let cli = Cli::new();
    cli.ok(&["append", "user", "u1", "UserCreated", r#"{"id":1}"#]);
    let created = cli.ok(&[
        "group",
        "create",
        "user",
        "mailer",
        "--ack-timeout",
        "2s",
        "--max-deliveries",
        "3",
    ]);
    assert_eq!(
        created.trim(),
        "created group mailer of user (start beginning, ack timeout 2s, max deliveries 3)"
    );
    // The same settings again change nothing; others conflict; a bad start is refused.
    let again = cli.ok(&[
        "group",
        "create",
        "user",
        "mailer",
        "--ack-timeout",
        "2000ms",
        "--max-deliveries",
        "3",
    ]);
    assert!(
        again.starts_with("unchanged: already had group mailer"),
        "{again}"
    );
    let other = cli.run(&["group", "create", "user", "mailer"]);
    assert_eq!(code(&other), 3, "{}", text(&other.stderr));
    assert!(
        text(&other.stderr).contains("other settings"),
        "{}",
        text(&other.stderr)
    );
    let bad = cli.run(&["group", "create", "user", "g2", "--start", "now"]);
    assert_eq!(code(&bad), 2, "{}", text(&bad.stderr));
    let bad = cli.run(&["group", "create", "user", "a b"]);
    assert_eq!(code(&bad), 2, "{}", text(&bad.stderr));

    let list = cli.ok(&["group", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[0].starts_with("type"), "{list}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..5],
        ["user", "mailer", "beginning", "2s", "3"],
        "{list}"
    );
    assert_eq!(
        cli.ok(&["group", "list", "--type", "order"]).trim(),
        "no groups (create one with `streamfold group create TYPE GROUP`)"
    );
    let listed: Value = serde_json::from_str(&cli.ok(&["group", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["group"], "mailer");
    assert_eq!(listed[0]["settings"]["ack_timeout_ms"], 2000);

    let show = cli.ok(&["group", "show", "user", "mailer"]);
    for line in [
        "group mailer of user",
        "start:          beginning",
        "ack timeout:    2s",
        "max deliveries: 3",
        "undelivered:    1",
        "pending:        0",
        "oldest pending: -",
        "parked:         0",
        "no consumer has polled yet",
    ] {
        assert!(show.lines().any(|l| l == line), "{line:?} in {show}");
    }
    let status: Value =
        serde_json::from_str(&cli.ok(&["group", "show", "user", "mailer", "--json"])).unwrap();
    assert_eq!(status["undelivered"], 1);
    assert_eq!(status["info"]["settings"]["max_deliveries"], 3);

    assert_eq!(
        cli.ok(&["group", "delete", "user", "mailer"]).trim(),
        "deleted group mailer of user"
    );
    for args in [
        &["group", "show", "user", "mailer"][..],
        &["group", "delete", "user", "mailer"],
    ] {
        let gone = cli.run(args);
        assert_eq!(code(&gone), 4, "{args:?}: {}", text(&gone.stderr));
    }
    assert!(cli.ok(&["group", "list"]).starts_with("no groups"));
}

#[test]
fn group_consume_acks_what_the_command_handles_and_parks_what_it_fails() {
    let cli = Cli::new();
    for (id, ty) in [
        ("a", "UserCreated"),
        ("b", "UserCreated"),
        ("c", "UserCreated"),
        ("a", "NameChanged"),
    ] {
        cli.ok(&["append", "user", id, ty, r#"{"n":1}"#]);
    }
    // One delivery at most: the failing event is parked at the next fetch.
    cli.ok(&["group", "create", "user", "work", "--max-deliveries", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let handler = r#"
        ev=$(cat)
        echo "$ev" | grep -q "\"aggregate_id\":\"$STREAMFOLD_AGGREGATE_ID\"" || exit 9
        echo "$STREAMFOLD_AGGREGATE_TYPE $STREAMFOLD_AGGREGATE_ID $STREAMFOLD_REVISION $STREAMFOLD_DELIVERY_COUNT ${STREAMFOLD_DELIVERY%%/*}" >> "$SEEN"
        if [ "$STREAMFOLD_AGGREGATE_ID" = c ]; then
            echo "a first line" >&2
            echo "cannot handle c" >&2
            exit 1
        fi
    "#;
    let out = cli
        .command(&[
            "group",
            "consume",
            "user",
            "work",
            "--consumer",
            "w1",
            "--wait",
            "300ms",
            "--once",
            "--",
            "sh",
            "-c",
            handler,
        ])
        .env("SEEN", &seen)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "consumed 4 events: 3 acked, 1 nacked"
    );
    let err = text(&out.stderr);
    assert!(err.contains("cannot handle c"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "user a 1 1 0\nuser b 1 1 0\nuser c 1 1 0\nuser a 2 1 0\n"
    );

    let status: Value =
        serde_json::from_str(&cli.ok(&["group", "show", "user", "work", "--json"])).unwrap();
    assert_eq!(status["pending"], 0, "{status}");
    assert_eq!(status["undelivered"], 0, "{status}");
    assert_eq!(status["parked"], 1, "{status}");
    assert_eq!(status["consumers"][0]["name"], "w1", "{status}");
    let show = cli.ok(&["group", "show", "user", "work"]);
    assert!(
        show.lines().any(|l| l.starts_with("w1 ")),
        "the consumer and its last poll: {show}"
    );

    let parked: Value =
        serde_json::from_str(&cli.ok(&["group", "parked", "user", "work", "--json"])).unwrap();
    let events = parked["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{parked}");
    assert_eq!(events[0]["event"]["aggregate_id"], "c");
    assert_eq!(events[0]["reason"], "max_deliveries");
    assert_eq!(events[0]["last_error"], "cannot handle c");
    let listed = cli.ok(&["group", "parked", "user", "work"]);
    assert!(
        listed.contains("user/c@1  UserCreated  max_deliveries after 1 deliveries"),
        "{listed}"
    );
    assert!(
        listed.contains("    last error: cannot handle c"),
        "{listed}"
    );

    // Replayed, it comes back; this time the command succeeds.
    assert_eq!(
        cli.ok(&["group", "replay-parked", "user", "work"]).trim(),
        "replayed 1 parked events into group work"
    );
    let again = cli.ok(&[
        "group", "consume", "user", "work", "--wait", "200ms", "--once", "--", "true",
    ]);
    assert_eq!(again.trim(), "consumed 1 events: 1 acked, 0 nacked");
    let status: Value =
        serde_json::from_str(&cli.ok(&["group", "show", "user", "work", "--json"])).unwrap();
    assert_eq!(
        (status["pending"].as_u64(), status["parked"].as_u64()),
        (Some(0), Some(0))
    );

    // A command that cannot start fails the consume, naming it.
    cli.ok(&["append", "user", "d", "UserCreated", "{}"]);
    let out = cli.run(&[
        "group",
        "consume",
        "user",
        "work",
        "--once",
        "--",
        "/nonexistent/handler",
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("/nonexistent/handler"));
    let unknown = cli.run(&["group", "consume", "user", "nope", "--once", "--", "true"]);
    assert_eq!(code(&unknown), 4, "{}", text(&unknown.stderr));
}

#[test]
fn the_readmes_group_examples_run_against_a_real_server() {
    let cli = Cli::new();
    let (mut server, sf) = serve(&cli, &[]);
    let dir = tempfile::tempdir().unwrap();
    let append = |id: &str, ty: &str| cli.ok(&["append", "user", id, ty, r#"{"n":1}"#]);
    let nothing_pending = || {
        let out = Command::new("curl")
            .args(["-sf", &format!("{sf}/v1/groups/user/mailer")])
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(status["pending"], 0, "{status}");
        assert_eq!(status["undelivered"], 0, "{status}");
    };

    append("1", "UserCreated");
    append("2", "UserCreated");
    append("1", "EmailChanged");
    let curl = run_example(
        "bash",
        &["-euo", "pipefail", "-c", &readme_example("group-curl")],
        &sf,
        dir.path(),
    );
    assert_eq!(curl, "UserCreated\nUserCreated\nEmailChanged\n");
    nothing_pending();

    // The same group, created again by each example: each sees only the new events.
    append("2", "NameChanged");
    let python = run_example(
        "python3",
        &["-c", &readme_example("group-python")],
        &sf,
        dir.path(),
    );
    assert_eq!(python, "NameChanged\n");
    nothing_pending();

    append("3", "UserCreated");
    append("3", "EmailChanged");
    let js = run_example(
        "node",
        &["--input-type=module", "-e", &readme_example("group-js")],
        &sf,
        dir.path(),
    );
    assert_eq!(js, "UserCreated\nEmailChanged\n");
    nothing_pending();

    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn group_consume_stops_on_sigterm_after_the_current_event() {
    let cli = Cli::new();
    cli.ok(&["append", "user", "a", "UserCreated", "{}"]);
    cli.ok(&["append", "user", "b", "UserCreated", "{}"]);
    cli.ok(&["group", "create", "user", "slow"]);
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let child = cli
        .command(&[
            "group",
            "consume",
            "user",
            "slow",
            "--",
            "sh",
            "-c",
            r#"echo "start $STREAMFOLD_AGGREGATE_ID" >> "$SEEN"; sleep 1; echo "done $STREAMFOLD_AGGREGATE_ID" >> "$SEEN""#,
        ])
        .env("SEEN", &seen)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&seen).is_ok_and(|s| s.starts_with("start a")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the handler never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "consumed 1 events: 1 acked, 0 nacked"
    );
    // The event being handled finished; the next one was given back, not handled.
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "start a\ndone a\n");
    let status: Value =
        serde_json::from_str(&cli.ok(&["group", "show", "user", "slow", "--json"])).unwrap();
    assert_eq!(status["parked"], 0, "{status}");
    assert!(status["pending"].as_u64().unwrap() <= 1, "{status}");
    let rest = cli.ok(&[
        "group", "consume", "user", "slow", "--wait", "200ms", "--once", "--", "true",
    ]);
    assert_eq!(rest.trim(), "consumed 1 events: 1 acked, 0 nacked");
}

#[test]
fn the_readmes_projection_examples_run_against_a_real_server() {
    let cli = Cli::new();
    let (mut server, sf) = serve(&cli, &[]);
    // The curl example uploads the projection from where plugins/build-rust.sh puts it.
    let dir = tempfile::tempdir().unwrap();
    let wasm_dir = dir.path().join("target/wasm32-unknown-unknown/plugin");
    std::fs::create_dir_all(&wasm_dir).unwrap();
    std::fs::copy(
        streamfold_tests::plugins::path("email-domains"),
        wasm_dir.join("email_domains.wasm"),
    )
    .unwrap();
    let curl = run_example(
        "bash",
        &["-euo", "pipefail", "-c", &readme_example("projection-curl")],
        &sf,
        dir.path(),
    );
    assert_eq!(
        curl,
        "{\"domain\":\"example.com\",\"users\":2,\"user_ids\":[\"1\",\"2\"]}\n[\"user/1\",\"user/2\"]\n"
    );

    // The shell example: the streamfold on PATH, against the same Redis.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_streamfold"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = cli
        .command(&[])
        .get_envs()
        .fold(&mut Command::new("bash"), |c, (k, v)| match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        })
        .args(["-euo", "pipefail", "-c", &readme_example("projection-cli")])
        .env("PATH", path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let shown = text(&out.stdout);
    assert!(shown.contains("email-domains"), "{shown}");
    assert!(
        shown.contains("{\"domain\":\"example.com\",\"users\":2,\"user_ids\":[\"1\",\"2\"]}\n2\n"),
        "{shown}"
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// The documents `email-domains` keeps for users whose last email is `email[i]`
/// (user ids `u0`, `u1`, …).
fn email_domains_model(emails: &[String]) -> std::collections::BTreeMap<String, Value> {
    let mut model = std::collections::BTreeMap::new();
    let mut domains: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (i, email) in emails.iter().enumerate() {
        let domain = email.rsplit_once('@').unwrap().1.to_lowercase();
        model.insert(
            format!("user/u{i}"),
            serde_json::json!({ "domain": domain }),
        );
        domains.entry(domain).or_default().push(format!("u{i}"));
    }
    for (domain, mut ids) in domains {
        ids.sort();
        model.insert(
            format!("domain/{domain}"),
            serde_json::json!({"domain": domain, "users": ids.len(), "user_ids": ids}),
        );
    }
    model
}

/// Every document of `email-domains`, through `streamfold projection query --json`.
fn email_domains_docs(cli: &Cli) -> Option<std::collections::BTreeMap<String, Value>> {
    let out = cli.run(&[
        "projection",
        "query",
        "email-domains",
        "--limit",
        "1000",
        "--json",
    ]);
    if !out.status.success() {
        return None; // not serving yet
    }
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["next_after"], Value::Null, "more than one page");
    Some(
        page["docs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["key"].as_str().unwrap().to_owned(), d["doc"].clone()))
            .collect(),
    )
}

#[test]
fn projection_runners_killed_at_random_moments_fold_every_event_exactly_once() {
    const USERS: usize = 40;
    const ROUNDS: usize = 12;
    let cli = Cli::new();
    let wasm = streamfold_tests::plugins::path("email-domains");
    cli.ok(&["projection", "add", wasm.to_str().unwrap()]);

    // A writer appends while runners come and go: each user created, then moved
    // between domains round after round.
    let url = cli.redis.url();
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = streamfold::EventStore::connect(&url, streamfold::StoreConfig::default())
                .await
                .unwrap();
            let domains = ["a.example", "B.example", "c.example", "d.example"];
            let mut last = vec![String::new(); USERS];
            for round in 0..ROUNDS {
                for (i, email) in last.iter_mut().enumerate() {
                    *email = format!("u{i}@{}", domains[(i + round) % domains.len()]);
                    let (event_type, data) = if round == 0 {
                        (
                            "UserCreated",
                            serde_json::json!({"id": i, "name": "u", "email": email}),
                        )
                    } else {
                        ("EmailChanged", serde_json::json!({"email": email}))
                    };
                    store
                        .append(
                            "user",
                            &format!("u{i}"),
                            vec![streamfold::NewEvent::new(event_type, &data)],
                            streamfold::ExpectedRevision::Exact(round as u64),
                        )
                        .await
                        .unwrap();
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            last
        })
    });

    // Runners killed with SIGKILL at moments that vary from run to run.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let run = || {
        cli.command(&["--projection-lease", "1s", "projection", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("streamfold projection run starts")
    };
    for _ in 0..6 {
        let mut runner = run();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(std::time::Duration::from_millis(200 + (seed >> 33) % 1300));
        runner.kill().unwrap(); // SIGKILL
        runner.wait().unwrap();
    }
    let emails = writer.join().unwrap();
    let want = email_domains_model(&emails);

    // One more runner: once it has caught up, the read model is the fold of every
    // event, each applied once.
    let mut runner = run();
    let started = std::time::Instant::now();
    let mut seen = None;
    while started.elapsed() < std::time::Duration::from_secs(120) {
        seen = email_domains_docs(&cli);
        if seen.as_ref() == Some(&want) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    runner.kill().unwrap();
    runner.wait().unwrap();
    assert_eq!(seen.as_ref(), Some(&want), "the read model after the kills");
    let status: Value =
        serde_json::from_str(&cli.ok(&["projection", "get", "email-domains", "--json"])).unwrap();
    assert_eq!(
        status["status"][0]["events"],
        USERS * ROUNDS,
        "every event folded once: {status}"
    );
}

/// Waits (up to two minutes) until `check` holds, polling every 50 ms.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_paused_projection_runner_whose_lease_expired_never_commits_again() {
    let cli = Cli::new();
    let wasm = streamfold_tests::plugins::path("email-domains");
    cli.ok(&["projection", "add", wasm.to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt
        .block_on(streamfold::EventStore::connect(
            &cli.redis.url(),
            streamfold::StoreConfig::default(),
        ))
        .unwrap();
    let mut emails = vec![String::new(); 20];
    let append_round = |round: usize, emails: &mut Vec<String>| {
        for (i, email) in emails.iter_mut().enumerate() {
            *email = format!("u{i}@r{round}.example");
            let (event_type, data) = if round == 0 {
                (
                    "UserCreated",
                    serde_json::json!({"id": i, "name": "u", "email": email}),
                )
            } else {
                ("EmailChanged", serde_json::json!({"email": email}))
            };
            rt.block_on(store.append(
                "user",
                &format!("u{i}"),
                vec![streamfold::NewEvent::new(event_type, &data)],
                streamfold::ExpectedRevision::Exact(round as u64),
            ))
            .unwrap();
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        let log = std::fs::File::create(dir.path().join(name)).unwrap();
        cli.command(&["--projection-lease", "1s", "projection", "run"])
            .env("STREAMFOLD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("streamfold projection run starts")
    };
    let runner_pid = || -> Option<String> {
        let out = cli.run(&["projection", "get", "email-domains", "--json"]);
        let s: Value = serde_json::from_slice(&out.stdout).ok()?;
        let holder = s["status"][0]["runner"]["holder"].as_str()?.to_owned();
        holder.split('-').nth(1).map(str::to_owned)
    };

    append_round(0, &mut emails);
    let mut a = start("a.log");
    eventually("runner A to fold the users", || {
        email_domains_docs(&cli).as_ref() == Some(&email_domains_model(&emails))
    });
    assert_eq!(runner_pid(), Some(a.id().to_string()));

    // A stops dead (SIGSTOP: a long GC pause, a VM migration) holding its lease.
    let signal = |sig: &str, pid: u32| {
        assert!(
            Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP", a.id());
    let mut b = start("b.log");
    eventually("runner B to take the lease over", || {
        runner_pid() == Some(b.id().to_string())
    });
    append_round(1, &mut emails);
    eventually("runner B to fold the moves", || {
        email_domains_docs(&cli).as_ref() == Some(&email_domains_model(&emails))
    });

    // A wakes up: it finds its lease gone and never commits again.
    signal("-CONT", a.id());
    eventually("runner A to notice it lost the lease", || {
        std::fs::read_to_string(dir.path().join("a.log"))
            .unwrap()
            .contains("lease lost")
    });
    append_round(2, &mut emails);
    eventually("the last moves", || {
        email_domains_docs(&cli).as_ref() == Some(&email_domains_model(&emails))
    });
    assert_eq!(runner_pid(), Some(b.id().to_string()));
    let status: Value =
        serde_json::from_str(&cli.ok(&["projection", "get", "email-domains", "--json"])).unwrap();
    assert_eq!(
        status["status"][0]["events"], 60,
        "each event once: {status}"
    );
    for child in [&mut a, &mut b] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

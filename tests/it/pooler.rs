//! The server behind PgBouncer in session mode: writes, reads, live delivery (`LISTEN` holds its
//! server connection) and the session settings, which travel as `SET` statements because the
//! pooler refuses them as startup parameters.

use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::cluster::PgBouncer;
use crate::helpers::{RunningServer, event_input, fresh_postgres_database};
use crate::live::{ADDED, Ws, added, now, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_behind_pgbouncer_in_session_mode_on_postgres() {
    let Some(database) = fresh_postgres_database().await else {
        return;
    };
    let Some(bouncer) = PgBouncer::start("session") else {
        return;
    };
    let url = bouncer.url(database.name());
    let server = RunningServer::start_with(|config| {
        config.database_url = url.clone();
        config.sequence_interval_ms = 50;
    })
    .await;
    let addr = server.addr;

    let mut ws = Ws::ready(addr, None).await;
    ws.subscribe("s", ADDED, json!({"after": now(addr, None).await})).await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong");
    let mut written = Vec::new();
    for n in 0..5 {
        written.push(
            write(
                addr,
                event_input(json!({"correlationId": format!("pooled-{}", n % 2)})),
                None,
            )
            .await,
        );
    }
    for id in &written {
        assert_eq!(
            &added(&ws.next("s").await).2,
            id,
            "delivered in commit order through the pooler"
        );
    }
    let (status, body) = crate::live::post(
        addr,
        "/graphql",
        &json!({"query": "{ auditEvents(first: 10) { totalCount } verifyChain(correlationId: \"pooled-0\") { valid verifiedEvents } }"}),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["auditEvents"]["totalCount"], 5, "{body}");
    assert_eq!(body["data"]["verifyChain"]["valid"], true, "{body}");
    assert_eq!(body["data"]["verifyChain"]["verifiedEvents"], 3, "{body}");

    // Every pooled session carries the store's settings, statement timeout included.
    let mut options = auditgraph::config::Config::for_database(&url).store_options().unwrap();
    options.statement_timeout = std::time::Duration::from_millis(1_234);
    let store = auditgraph::store::Store::connect(&options).await.unwrap();
    for (setting, expected) in [
        ("statement_timeout", "1234ms"),
        ("jit", "off"),
        ("plan_cache_mode", "force_generic_plan"),
    ] {
        let row = store
            .db()
            .query_one_raw(sea_orm::Statement::from_string(
                store.backend(),
                format!("SELECT current_setting('{setting}') AS value"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<String>("", "value").unwrap(), expected, "{setting}");
    }
}

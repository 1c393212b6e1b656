//! The schema as the database enforces it, independent of the API.

use auditgraph::entity::audit_event::{self, ChildrenLink, ParentLink};
use auditgraph::store::Columns;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, ModelTrait, Statement};
use serde_json::json;
use uuid::Uuid;

use crate::both_engines;
use crate::helpers::{Engine, TestApp};

/// Inserts a row with raw SQL, bypassing the application.
async fn raw_insert(
    app: &TestApp,
    id: Uuid,
    timestamp: DateTime<Utc>,
    date: NaiveDate,
    retention_days: i32,
) -> Result<(), DbErr> {
    let sql = "INSERT INTO audit_events (event_id, event_timestamp, event_date, event_type, event_category, \
               event_action, event_outcome, actor_type, actor_id, resource_type, resource_id, correlation_id, \
               event_data, retention_days) \
               VALUES ($1, $2, $3, 'test.raw.insert', 'test', 'insert', 'success', 'service', 'test', 'test', 'x', 'rr-raw', $4, $5)";
    let values: Vec<sea_orm::Value> = vec![
        id.into(),
        timestamp.into(),
        date.into(),
        json!({"raw": true}).into(),
        retention_days.into(),
    ];
    app.store
        .db()
        .execute_raw(Statement::from_sql_and_values(app.store.backend(), sql, values))
        .await
        .map(drop)
}

both_engines!(
    migrations_run_up_then_down_then_up_again,
    deleting_an_event_is_refused_and_a_parent_survives_even_with_foreign_keys_off,
    the_database_rejects_an_event_date_that_is_not_the_utc_date_of_the_timestamp,
    the_database_rejects_retention_days_out_of_range,
    the_entity_follows_parent_and_children_links,
);

async fn migrations_run_up_then_down_then_up_again(app: TestApp) {
    app.create(json!({})).await;
    Migrator::down(app.store.db(), None).await.expect("down");
    let gone = app
        .store
        .db()
        .query_one_raw(Statement::from_string(
            app.store.backend(),
            "SELECT COUNT(*) FROM audit_events",
        ))
        .await;
    assert!(gone.is_err(), "audit_events must be gone after down");
    Migrator::up(app.store.db(), None).await.expect("up again");
    assert_eq!(app.row_count().await, 0);
    app.create(json!({})).await;
    assert_eq!(app.row_count().await, 1);
}

/// Stored events cannot be deleted by any statement (retention will have its own path), so a
/// parent survives under its children even where foreign keys are off (an SQLite shell).
async fn deleting_an_event_is_refused_and_a_parent_survives_even_with_foreign_keys_off(app: TestApp) {
    let parent = app.create(json!({})).await;
    let child = app.create(json!({"parentEventId": parent["eventId"]})).await;
    for event in [&parent, &child] {
        let id: Uuid = event["eventId"].as_str().unwrap().parse().unwrap();
        let delete = Statement::from_sql_and_values(
            app.store.backend(),
            "DELETE FROM audit_events WHERE event_id = $1",
            [id.into()],
        );
        let error = app
            .store
            .db()
            .execute_raw(delete)
            .await
            .expect_err("the trigger must refuse");
        assert!(error.to_string().contains("audit events cannot be deleted"), "{error}");
    }
    if app.store.backend() == sea_orm::DatabaseBackend::Sqlite {
        // A shell's connection: foreign keys off, no RESTRICT to stop it.
        let pool = app.store.db().get_sqlite_connection_pool();
        let mut connection = pool.acquire().await.unwrap();
        sea_orm::sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut *connection)
            .await
            .unwrap();
        let refused = sea_orm::sqlx::query("DELETE FROM audit_events")
            .execute(&mut *connection)
            .await;
        sea_orm::sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut *connection)
            .await
            .unwrap();
        let error = refused.expect_err("the trigger must refuse with foreign keys off too");
        assert!(error.to_string().contains("audit events cannot be deleted"), "{error}");
    } else {
        let error = app
            .store
            .db()
            .execute_unprepared("TRUNCATE audit_events")
            .await
            .expect_err("TRUNCATE is refused too");
        assert!(error.to_string().contains("audit events cannot be deleted"), "{error}");
    }
    assert_eq!(app.row_count().await, 2);
}

async fn the_database_rejects_an_event_date_that_is_not_the_utc_date_of_the_timestamp(app: TestApp) {
    // 23:30 UTC yesterday is yesterday's date whatever the session time zone; both months'
    // partitions exist after migration.
    let today = Utc::now().date_naive();
    let late_yesterday = today.pred_opt().unwrap().and_hms_opt(23, 30, 0).unwrap().and_utc();
    let wrong = raw_insert(&app, Uuid::now_v7(), late_yesterday, today, 30).await;
    let error = wrong.expect_err("a mismatched event_date must be rejected").to_string();
    // PostgreSQL names the CHECK; on SQLite the trigger that also covers unreadable timestamps
    // fires first.
    assert!(
        error.contains("chk_event_date_is_utc_date") || error.contains("event_date must be the UTC date"),
        "unexpected error: {error}"
    );
    raw_insert(&app, Uuid::now_v7(), late_yesterday, late_yesterday.date_naive(), 30)
        .await
        .expect("a matching date is accepted");
    assert_eq!(app.row_count().await, 1);
}

async fn the_database_rejects_retention_days_out_of_range(app: TestApp) {
    let now = Utc::now() - Duration::minutes(1);
    for days in [0, 2556] {
        assert!(
            raw_insert(&app, Uuid::now_v7(), now, now.date_naive(), days)
                .await
                .is_err(),
            "{days} days"
        );
    }
    for days in [1, 2555] {
        raw_insert(&app, Uuid::now_v7(), now, now.date_naive(), days)
            .await
            .expect("in range");
    }
}

async fn the_entity_follows_parent_and_children_links(app: TestApp) {
    let root = app.create(json!({})).await;
    let a = app.create(json!({"parentEventId": root["eventId"]})).await;
    let b = app.create(json!({"parentEventId": root["eventId"]})).await;
    let root_id: Uuid = root["eventId"].as_str().unwrap().parse().unwrap();
    let root_model = audit_event::Entity::find()
        .all(app.store.db())
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.event_id == root_id)
        .unwrap();
    let mut children: Vec<String> = root_model
        .find_linked(ChildrenLink)
        .all(app.store.db())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.event_id.to_string())
        .collect();
    children.sort();
    let mut expected = vec![
        a["eventId"].as_str().unwrap().to_string(),
        b["eventId"].as_str().unwrap().to_string(),
    ];
    expected.sort();
    assert_eq!(children, expected);
    let child = app
        .store
        .find_event(a["eventId"].as_str().unwrap().parse().unwrap(), Columns::ALL)
        .await
        .unwrap()
        .unwrap();
    let parent = child
        .find_linked(ParentLink)
        .one(app.store.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parent.event_id, root_id);
}

#[tokio::test]
async fn sqlite_runs_with_foreign_keys_on_and_the_wal_journal() {
    let app = TestApp::new(Engine::Sqlite).await.unwrap();
    let db = app.store.db();
    let mode = db
        .query_one_raw(Statement::from_string(app.store.backend(), "PRAGMA journal_mode"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mode.try_get_by_index::<String>(0).unwrap(), "wal");
    let fks = db
        .query_one_raw(Statement::from_string(app.store.backend(), "PRAGMA foreign_keys"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fks.try_get_by_index::<i32>(0).unwrap(), 1);
}

#[tokio::test]
async fn postgres_creates_a_missing_month_partition_on_demand() {
    // Allow timestamps years ahead so that the write lands in a month no partition covers yet.
    let Some(app) = TestApp::with_config(Engine::Postgres, |c| c.max_future_skew_minutes = 10 * 365 * 24 * 60).await
    else {
        return;
    };
    let partition_exists = |name: &'static str| {
        let db = app.store.db().clone();
        async move {
            let row = db
                .query_one_raw(Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    format!("SELECT to_regclass('{name}') IS NOT NULL AS present"),
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<bool>("", "present").unwrap()
        }
    };
    assert!(!partition_exists("audit_events_2031_05").await);
    let parent = app
        .create(json!({"eventTimestamp": "2031-05-31T23:59:59.999999Z"}))
        .await;
    assert!(partition_exists("audit_events_2031_05").await);
    // A child in the following month: a second partition, and the link spans the two.
    let child = app
        .create(json!({"eventTimestamp": "2031-06-01T00:00:00Z", "parentEventId": parent["eventId"]}))
        .await;
    assert!(partition_exists("audit_events_2031_06").await);
    assert_eq!(child["parentEventDate"], "2031-05-31");
    assert_eq!(app.row_count().await, 2);
}

/// The server's sessions run without JIT compilation, which cost seconds on the recursive tree
/// walks for nothing; statement timeouts stay set.
#[tokio::test]
async fn postgres_sessions_run_without_jit() {
    let Some(app) = TestApp::new(Engine::Postgres).await else {
        return;
    };
    let setting = |name: &'static str| {
        let db = app.store.db().clone();
        async move {
            db.query_one_raw(Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                format!("SELECT current_setting('{name}') AS value"),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<String>("", "value")
            .unwrap()
        }
    };
    assert_eq!(setting("jit").await, "off");
    assert_ne!(setting("statement_timeout").await, "0");
}

//! The checked-in SDL is the contract.

#[test]
fn the_checked_in_schema_matches_the_built_schema() {
    let built = auditgraph::graphql::sdl();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    if std::env::var("UPDATE_SCHEMA").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &built).expect("write schema.graphql");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == built,
        "schema.graphql differs from the schema the code builds.\n\
         If the change is intended, refresh it with:\n\n    UPDATE_SCHEMA=1 cargo test the_checked_in_schema\n\n\
         and commit schema.graphql."
    );
}

/// The SDL without descriptions, whitespace or commas, so that signatures compare whatever the layout.
fn signatures(sdl: &str) -> String {
    let mut out = String::new();
    for (i, part) in sdl.split("\"\"\"").enumerate() {
        if i % 2 == 0 {
            out.extend(part.chars().filter(|c| !c.is_whitespace() && *c != ','));
        }
    }
    out
}

#[test]
fn the_schema_names_the_documented_operations() {
    let sdl = signatures(&auditgraph::graphql::sdl());
    for needle in [
        "createAuditEvent(input: AuditEventInput!): AuditEvent!",
        "auditEvent(eventId: UUID!): AuditEvent",
        "auditEvents(filter: AuditEventFilter, first: Int, after: String, last: Int, before: String): AuditEventConnection!",
    ] {
        assert!(sdl.contains(&signatures(needle)), "the SDL lacks `{needle}`");
    }
}

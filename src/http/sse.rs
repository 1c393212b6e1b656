//! GraphQL over server-sent events, for clients behind proxies that refuse WebSockets: the
//! "distinct connections" mode of the GraphQL over SSE protocol. `POST /graphql` with
//! `Accept: text/event-stream` and the usual JSON body streams each result as an event `next`
//! (`data`: the JSON result) and ends with an event `complete`. Authentication, roles and limits
//! are those of HTTP; each stream counts as a live connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::HttpState;
use super::graphql::{BAD_REQUEST, Media, refusal, screen};
use crate::auth::Principal;
use crate::graphql::prepare_stream;
use crate::live::Transport;

/// The media type of the stream.
pub const EVENT_STREAM: &str = "text/event-stream";

/// How much the client wants an event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preference {
    /// `text/event-stream` is not acceptable.
    No,
    /// It is acceptable, but not above JSON: only subscriptions stream.
    ForSubscriptions,
    /// It is preferred to JSON (or the only media type): every operation streams.
    Always,
}

/// Reads `Accept`.
pub fn preference(headers: &HeaderMap) -> Preference {
    let Some(items) = super::weighted_items(headers, header::ACCEPT) else {
        return Preference::No;
    };
    let (mut events, mut json) = (0.0_f32, 0.0_f32);
    for (media, weight) in items {
        if media.eq_ignore_ascii_case(EVENT_STREAM) {
            events = events.max(weight);
        } else if media.eq_ignore_ascii_case(super::graphql::GRAPHQL_RESPONSE_JSON)
            || super::graphql::is_json_range(media)
        {
            json = json.max(weight);
        }
    }
    if events <= 0.0 {
        Preference::No
    } else if events > json {
        Preference::Always
    } else {
        Preference::ForSubscriptions
    }
}

/// Streams the results of `request`.
pub fn stream(state: HttpState, mut request: async_graphql::Request, caller: Option<Principal>) -> Response {
    // A stream has no status to spare for request errors: every refusal is a 400 before it starts.
    if let Err(refused) = screen(&state, &mut request) {
        return refusal(StatusCode::BAD_REQUEST, BAD_REQUEST, refused.to_string(), Media::Json);
    }
    let connection = match state.ctx.live.connect(Transport::ServerSentEvents) {
        Ok(connection) => connection,
        Err(refused) => return super::ws::too_many(&refused),
    };
    let order = crate::graphql::order::ResponseOrder::of(&mut request);
    let request = prepare_stream(request, &state.ctx.store, Arc::new(connection), caller);
    let responses = state.schema.execute_stream(request);
    let events = responses
        .map(move |mut response| {
            if let Some(order) = &order {
                order.apply(&mut response);
            }
            let data = serde_json::to_string(&response).unwrap_or_else(|_| "null".into());
            Ok::<_, Infallible>(Event::default().event("next").data(data))
        })
        .chain(futures_util::stream::once(async {
            Ok(Event::default().event("complete").data(""))
        }));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

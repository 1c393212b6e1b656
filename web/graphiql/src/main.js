// The GraphiQL playground of auditgraph. Everything it needs comes from the server's own origin:
// this bundle, its style sheet and the editor's web workers (see ../refresh.sh).
import React from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import 'graphiql/style.css';

// The Monaco editor runs its language services in web workers, served beside this bundle.
globalThis.MonacoEnvironment = {
  getWorker(_workerId, label) {
    const worker = (name) => new Worker(new URL(name, import.meta.url));
    switch (label) {
      case 'json':
        return worker('json.worker.js');
      case 'graphql':
        return worker('graphql.worker.js');
      default:
        return worker('editor.worker.js');
    }
  },
};

const DEFAULT_QUERY = `# Welcome to auditgraph. Run this query with Ctrl-Enter (Cmd-Enter on a Mac);
# the Docs button on the left lists every field, argument and filter.
#
# Live: subscription { auditEventAdded { cursor event { eventType correlationId } } }
#
# The newest causality trees of the last day, two levels deep:
{
  auditEvents(first: 10, filter: { rootsOnly: true, since: "24h" }) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      node {
        eventId
        eventType
        eventOutcome
        eventTimestamp
        childCount
        children(first: 20) {
          edges { node { eventType eventOutcome eventTimestamp } }
        }
      }
    }
  }
}
`;

const root = document.getElementById('graphiql');
const endpoint = new URL(root.dataset.endpoint || '/graphql', window.location.href);
// Subscriptions run over WebSocket (graphql-transport-ws, the graphql-ws library's protocol) at the
// same path: ws:// beside http://, wss:// beside https://.
const subscriptionEndpoint = new URL(endpoint);
subscriptionEndpoint.protocol = endpoint.protocol === 'https:' ? 'wss:' : 'ws:';
// The toolkit's fetcher sends the operation being run over WebSocket when the parsed document
// makes it a subscription, and everything else over HTTP with the header editor's headers, as
// before. Each subscription gets its own graphql-ws client whose connection_init payload
// (connectionParams) is those same headers, e.g. {"Authorization": "Bearer …"}; it connects
// lazily and closes its socket when the subscription ends or is stopped.
const fetcher = createGraphiQLFetcher({
  url: endpoint.href,
  subscriptionUrl: subscriptionEndpoint.href,
});

// A query in the address (?query=…) opens in the editor, so that links can share one.
const params = new URLSearchParams(window.location.search);
const initialQuery = params.get('query') ?? undefined;
const initialVariables = params.get('variables') ?? undefined;

createRoot(root).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: DEFAULT_QUERY,
    initialQuery,
    initialVariables,
  }),
);

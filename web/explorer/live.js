// The explorer's live.js.

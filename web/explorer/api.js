// The explorer's api.js.

// The explorer's search.js.

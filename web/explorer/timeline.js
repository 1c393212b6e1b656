// The explorer's timeline.js.

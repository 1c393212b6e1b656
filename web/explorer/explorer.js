// The explorer's explorer.js.

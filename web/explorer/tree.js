// The explorer's tree.js.

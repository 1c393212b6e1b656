// The explorer's detail.js.

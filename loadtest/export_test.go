package loadtest

// RejoinURL is rejoinURL, for the tests.
var RejoinURL = rejoinURL

// Package stager turns a controller's staging requests into BBS tasks in
// domain cf-app-staging and their completions into staging responses posted
// to the controller, as Diego's stager did.
//
// A staging task downloads the app bits (and, optionally, the build
// artifacts cache), runs the lifecycle's builder with Diego's arguments,
// then uploads the droplet (and, trying, the new cache) through cc-uploader.
// The lifecycle bundle comes from the file server at the path configured
// for "<lifecycle>/<stack>", so any builder that honours Diego's builder
// arguments drops in. Docker staging is refused: no registry is reachable.
//
// The BBS posts the completed task to /v1/staging/<guid>/completed; the
// failure reason is mapped to Diego's error ids (ErrorID), the response is
// posted to the annotation's completion callback, and the controller's
// status is returned to the BBS (503 when it cannot be reached, so the BBS
// retries).
package stager

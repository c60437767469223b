// Package watcher keeps the route emitter's routing table equal to the BBS
// and hands every change to the emitter.
//
// One goroutine owns the table. It starts with a full sync: it lists the
// desired LRPs' routing infos and the actual LRPs (in cell-local mode only
// the cell's instances, and the desired LRPs they belong to), builds a
// table, diffs it against the current one and emits the difference. It then
// follows the BBS event stream from the list's revision, so nothing falls in
// between, and resyncs every SyncInterval (60 s). Events that arrive while a
// resync's lists are in flight are cached and replayed on the new table
// (those at or before the lists' revision are already in them). A stream
// that breaks is resumed after its last revision; one that the BBS compacted
// past is reopened at the current revision and a resync is started at once.
//
// A RUNNING instance whose desired LRP the table does not know (a missed or
// filtered desired event) makes the watcher fetch that desired LRP first.
package watcher

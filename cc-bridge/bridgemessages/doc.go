// Package bridgemessages holds the JSON types exchanged between a Cloud
// Controller and Gavel's cc-bridge daemons: staging requests and responses,
// tps instance and stats reports, the watcher's callbacks and the upload
// jobs. Field names follow Cloud Foundry's runtimeschema cc_messages so a
// controller written against Diego's bridge reads them unchanged. The types
// carry no behaviour beyond validation.
package bridgemessages

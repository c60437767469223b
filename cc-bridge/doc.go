// Package ccbridge is the root of Gavel's cc-bridge: the adapters between a
// Cloud Controller (or any controller speaking its internal API) and the BBS
// that Diego ran on its cc-bridge VM. Its packages:
//
//   - bridgemessages: the JSON wire types between the controller and the bridge;
//   - stager: staging requests become tasks in domain cf-app-staging, and
//     their completions become staging responses posted to the controller;
//   - tps: the listener (instance status, stats and bulk status for the
//     controller) and the watcher (crash, rescheduling and readiness
//     callbacks from BBS events);
//   - uploader: the droplet and build-artifact upload relay (cc-uploader);
//   - fileserver: static lifecycle bundles (and droplets) for cells;
//   - app: the daemons' configs and ifrit wiring;
//   - cctest: a controller test double (a real Cloud Controller cannot run here).
package ccbridge

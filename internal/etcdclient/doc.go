// Package etcdclient dials etcd for Gavel daemons.
//
// [Dial] builds a clientv3 client from a [Config] (endpoints, optional TLS
// files, dial timeout), raises the message size limits so the BBS's large
// batched transactions and lists fit, and verifies that the cluster answers
// before returning, so a wrong endpoint fails at start with an error naming
// it rather than later on the first request.
package etcdclient

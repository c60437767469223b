// Package etcdtest starts real embedded etcd servers for tests.
//
// [Start] gives one test its own etcd in a temporary directory. Packages
// with many etcd tests share one server started in TestMain with [RunShared]
// and take it with [Shared], isolating each test under its own key prefix
// from [Prefix]:
//
//	func TestMain(m *testing.M) { etcdtest.RunShared(m) }
//
//	func TestSomething(t *testing.T) {
//		client := etcdtest.Shared(t)
//		prefix := etcdtest.Prefix(t)
//		...
//	}
//
// Servers listen on free loopback ports, skip fsync and use short raft
// ticks, so they start in well under a second. This is test support: it is a
// normal package only so that other packages' tests can import it.
package etcdtest

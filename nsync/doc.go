// Package nsync holds Gavel's bridge from a Cloud-Controller-style controller
// to the BBS: the controller's messages (ccmessages), the recipe builders that
// turn them into desired LRPs and tasks (recipe), and the listener that
// desires, scales and removes apps over HTTP (listener).
package nsync

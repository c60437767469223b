package app_test

import (
	"os"
	"os/signal"
	"syscall"
)

func notify(c chan os.Signal) { signal.Notify(c, syscall.SIGTERM, syscall.SIGINT) }

func notifyDrain(c chan os.Signal) { signal.Notify(c, syscall.SIGUSR1) }

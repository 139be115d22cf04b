//go:build !linux

package main

import "time"

func fsType(dir string) string { return "" }

func cpuModel() string { return "" }

func systemCPU() time.Duration { return -1 }

func diskWritten() int64 { return -1 }

func residentBytes() int64 { return -1 }

package sqlite

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// uringSyncer runs fdatasync through io_uring.
//
// A goroutine in a blocking system call keeps its scheduler slot (its P)
// until the runtime's monitor notices and hands the slot to another
// thread, tens of microseconds later or more; a WAL fdatasync is in
// flight most of the time under load, so with GOMAXPROCS=2 up to half a
// core sits idle while the request handlers wait to run. Here the kernel
// runs the sync on its own worker thread and signals the completion on an
// eventfd that the Go netpoller waits on: the waiting goroutine is parked
// like one reading a socket, and its core serves the handlers meanwhile.
//
// The semantics are fdatasync's (IORING_OP_FSYNC with
// IORING_FSYNC_DATASYNC is vfs_fsync_range(datasync=1)); only where the
// caller waits differs. One sync runs at a time (the syncer is used under
// walSyncer's maxSyncs = 1; mu makes it safe regardless).
type uringSyncer struct {
	mu     sync.Mutex
	ringFD int
	ring   []byte // the SQ and CQ rings (one mapping, IORING_FEAT_SINGLE_MMAP)
	sqes   []byte
	efd    *os.File // eventfd the kernel signals completions on
	buf    [8]byte

	sqTail, sqMask, cqHead, cqTail, cqMask *uint32
	sqArray                                unsafe.Pointer
	cqes                                   unsafe.Pointer
}

// io_uring ABI (include/uapi/linux/io_uring.h).
const (
	iouringOffSQRing        = 0
	iouringOffSQEs          = 0x10000000
	iouringFeatSingleMmap   = 1 << 0
	iouringOpFsync          = 3
	iouringFsyncDatasync    = 1 << 0
	iouringSQEAsync         = 1 << 4
	iouringRegisterEventFD  = 4
	iouringSQESize          = 64
	iouringCQESize          = 16
	iouringEntries          = 2
	iouringParamsSize       = 120
	iouringSQOffsetsAt      = 40 // offsetof(io_uring_params, sq_off)
	iouringCQOffsetsAt      = 80 // offsetof(io_uring_params, cq_off)
	iouringFeaturesAt       = 20 // offsetof(io_uring_params, features)
	iouringSQEntriesAt      = 0
	iouringCQEntriesAt      = 4
	iouringOffsetsFieldSize = 4
)

// errNoURing says io_uring cannot be used here (an old kernel, or a
// seccomp policy or kernel.io_uring_disabled refusing it): the caller
// falls back to a plain fdatasync.
var errNoURing = errors.New("io_uring is not available")

// newURingSyncer sets up a small ring whose completions signal an
// eventfd registered with the netpoller.
func newURingSyncer() (_ *uringSyncer, err error) {
	var params [iouringParamsSize]byte
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, iouringEntries, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		return nil, fmt.Errorf("%w: io_uring_setup: %v", errNoURing, errno)
	}
	u := &uringSyncer{ringFD: int(fd)}
	defer func() {
		if err != nil {
			u.close()
		}
	}()
	u32 := func(at int) uint32 { return *(*uint32)(unsafe.Pointer(&params[at])) }
	if u32(iouringFeaturesAt)&iouringFeatSingleMmap == 0 {
		return nil, fmt.Errorf("%w: the kernel lacks IORING_FEAT_SINGLE_MMAP (Linux 5.4)", errNoURing)
	}
	sqEntries, cqEntries := u32(iouringSQEntriesAt), u32(iouringCQEntriesAt)
	// io_sqring_offsets: head, tail, ring_mask, ring_entries, flags, dropped, array.
	sq := func(i int) uint32 { return u32(iouringSQOffsetsAt + i*iouringOffsetsFieldSize) }
	// io_cqring_offsets: head, tail, ring_mask, ring_entries, overflow, cqes.
	cq := func(i int) uint32 { return u32(iouringCQOffsetsAt + i*iouringOffsetsFieldSize) }
	size := max(int(sq(6)+sqEntries*4), int(cq(5)+cqEntries*iouringCQESize))
	if u.ring, err = unix.Mmap(u.ringFD, iouringOffSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("%w: mmap the rings: %v", errNoURing, err)
	}
	if u.sqes, err = unix.Mmap(u.ringFD, iouringOffSQEs, int(sqEntries)*iouringSQESize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("%w: mmap the submission entries: %v", errNoURing, err)
	}
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&u.ring[off])) }
	u.sqTail, u.sqMask, u.sqArray = at(sq(1)), at(sq(2)), unsafe.Pointer(&u.ring[sq(6)])
	u.cqHead, u.cqTail, u.cqMask, u.cqes = at(cq(0)), at(cq(1)), at(cq(2)), unsafe.Pointer(&u.ring[cq(5)])

	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("%w: eventfd: %v", errNoURing, err)
	}
	// A non-blocking descriptor given to os.NewFile joins the netpoller.
	u.efd = os.NewFile(uintptr(efd), "io_uring-eventfd")
	e32 := int32(efd)
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(u.ringFD), iouringRegisterEventFD, uintptr(unsafe.Pointer(&e32)), 1, 0, 0); errno != 0 {
		return nil, fmt.Errorf("%w: register the eventfd: %v", errNoURing, errno)
	}
	return u, nil
}

// datasync fdatasyncs f and returns once the kernel reports it done.
func (u *uringSyncer) datasync(f *os.File) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var submitErr error
	// Control keeps f's descriptor open until the submission is made;
	// walSyncer keeps every WAL file it opened open until it closes.
	if err := rc.Control(func(fd uintptr) { submitErr = u.submit(int32(fd)) }); err != nil {
		return err
	}
	if submitErr != nil {
		return submitErr
	}
	res, err := u.complete()
	if err != nil {
		return err
	}
	if res < 0 {
		return syscall.Errno(-res)
	}
	return nil
}

// submit queues one IORING_OP_FSYNC of fd and hands it to the kernel.
func (u *uringSyncer) submit(fd int32) error {
	sqe := u.sqes[:iouringSQESize]
	clear(sqe)
	sqe[0] = iouringOpFsync
	sqe[1] = iouringSQEAsync // straight to a kernel worker: a sync always blocks
	*(*int32)(unsafe.Pointer(&sqe[4])) = fd
	*(*uint32)(unsafe.Pointer(&sqe[28])) = iouringFsyncDatasync
	tail := *u.sqTail // only this process writes the SQ tail, under mu
	*(*uint32)(unsafe.Add(u.sqArray, 4*(tail&*u.sqMask))) = 0
	atomic.StoreUint32(u.sqTail, tail+1)
	for {
		n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(u.ringFD), 1, 0, 0, 0, 0)
		switch {
		case errno == syscall.EINTR || errno == syscall.EAGAIN || errno == syscall.EBUSY:
			continue
		case errno != 0:
			atomic.StoreUint32(u.sqTail, tail) // not consumed: take it back
			return fmt.Errorf("io_uring_enter: %w", errno)
		case n != 1:
			return fmt.Errorf("io_uring_enter submitted %d of 1 entries", n)
		}
		return nil
	}
}

// complete waits for the one completion in flight and returns its result.
func (u *uringSyncer) complete() (int32, error) {
	for {
		head := *u.cqHead
		if head != atomic.LoadUint32(u.cqTail) {
			cqe := unsafe.Add(u.cqes, iouringCQESize*uintptr(head&*u.cqMask))
			res := *(*int32)(unsafe.Add(cqe, 8))
			atomic.StoreUint32(u.cqHead, head+1)
			return res, nil
		}
		// Parks in the netpoller until the kernel signals a completion
		// (reading resets the counter; a signal from this completion that
		// came before the check above is consumed here and the loop
		// finds the entry).
		if _, err := u.efd.Read(u.buf[:]); err != nil {
			return 0, fmt.Errorf("wait for io_uring: %w", err)
		}
	}
}

func (u *uringSyncer) close() error {
	var errs []error
	if u.efd != nil {
		errs = append(errs, u.efd.Close())
	}
	if u.sqes != nil {
		errs = append(errs, unix.Munmap(u.sqes))
	}
	if u.ring != nil {
		errs = append(errs, unix.Munmap(u.ring))
	}
	errs = append(errs, unix.Close(u.ringFD))
	return errors.Join(errs...)
}

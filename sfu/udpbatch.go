//go:build linux && (amd64 || arm64)

package sfu

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Batching of the shared UDP port (Config.UDPMuxPort). Every call's
// packets go through one socket, so the packets that the forwarding
// goroutines write within a fraction of a millisecond can leave in one
// sendmmsg, and the packets waiting in the socket's receive queue can be
// taken in one recvmmsg: one system call for many packets instead of one
// each.
const (
	// batchSize bounds the datagrams of one sendmmsg or recvmmsg.
	batchSize = 32
	// batchDatagram is the largest datagram a write batch holds; larger
	// ones (none that Pion sends: DTLS, SCTP and RTP stay under 1280
	// bytes) are written on their own.
	batchDatagram = 1500
	// readDatagram is the receive buffer of one datagram, as large as
	// the ICE mux's own.
	readDatagram = 8192
)

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
}

// sendBatch is the datagrams waiting for one sendmmsg, in fixed slots so
// that batching never allocates.
type sendBatch struct {
	n     int
	first time.Time // when the oldest datagram was queued
	hdrs  [batchSize]mmsghdr
	iovs  [batchSize]syscall.Iovec
	names [batchSize]syscall.RawSockaddrInet4
	bufs  [batchSize][batchDatagram]byte
}

// batchConn is an IPv4 UDP socket whose writes are sent in batches with
// sendmmsg and whose reads are received in batches with recvmmsg. It
// implements net.PacketConn and the ICE mux's allocation-free
// ReadFromAddrPort and WriteToAddrPort. Writes report success once
// queued: like UDP itself, a batch that the kernel refuses is lost.
// Packets to one destination leave in the order they were written.
type batchConn struct {
	conn  *net.UDPConn
	raw   syscall.RawConn
	delay time.Duration

	rmu    sync.Mutex // guards the read batch; the mux has one reader
	rhdrs  [batchSize]mmsghdr
	riovs  [batchSize]syscall.Iovec
	rnames [batchSize]syscall.RawSockaddrInet4
	rbufs  [batchSize][readDatagram]byte
	rn     int // datagrams received by the last recvmmsg
	rnext  int // next of those to hand out
	// The system call's results, and the function that RawConn.Read
	// calls, made once: a closure made per call would be allocated.
	rgot   int
	rerrno syscall.Errno
	rfn    func(fd uintptr) bool

	mu      sync.Mutex // guards everything below
	pending *sendBatch // filling
	spare   *sendBatch // empty, or being sent
	sending bool       // a goroutine is sending; it also sends what fills meanwhile
	sent    *sync.Cond // signalled when a send ends
	timer   *time.Timer
	armed   bool
	closed  bool

	// The batch being sent and the system call's results, owned by the
	// goroutine that set sending, and the function RawConn.Write calls.
	sb     *sendBatch
	soff   int
	sgot   int
	serrno syscall.Errno
	sfn    func(fd uintptr) bool

	sendCalls, sentDatagrams atomic.Uint64
	recvCalls, recvDatagrams atomic.Uint64
}

// batchingAvailable says whether newBatchConn batches on this platform.
const batchingAvailable = true

// newBatchConn wraps c, an IPv4 UDP socket, with batching, holding a
// written packet at most delay.
func newBatchConn(c *net.UDPConn, delay time.Duration) (*batchConn, error) {
	if a, ok := c.LocalAddr().(*net.UDPAddr); !ok || a.IP.To4() == nil {
		return nil, errors.New("sfu: batching needs an IPv4 UDP socket")
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &batchConn{conn: c, raw: raw, delay: delay, pending: &sendBatch{}, spare: &sendBatch{}}
	b.sent = sync.NewCond(&b.mu)
	b.rfn, b.sfn = b.recvmmsg, b.sendmmsg
	b.timer = time.AfterFunc(time.Hour, b.timerFired)
	b.timer.Stop()
	for i := range b.rhdrs {
		b.riovs[i].Base = &b.rbufs[i][0]
		b.rhdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.rnames[i]))
		b.rhdrs[i].hdr.Iov = &b.riovs[i]
		b.rhdrs[i].hdr.Iovlen = 1
	}
	for _, sb := range []*sendBatch{b.pending, b.spare} {
		for i := range sb.hdrs {
			sb.iovs[i].Base = &sb.bufs[i][0]
			sb.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&sb.names[i]))
			sb.hdrs[i].hdr.Namelen = syscall.SizeofSockaddrInet4
			sb.hdrs[i].hdr.Iov = &sb.iovs[i]
			sb.hdrs[i].hdr.Iovlen = 1
		}
	}
	return b, nil
}

// ReadFromAddrPort returns the next received datagram, receiving up to
// batchSize at once when none is left.
func (b *batchConn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	for b.rnext >= b.rn {
		if err := b.receiveLocked(); err != nil {
			return 0, netip.AddrPort{}, err
		}
	}
	i := b.rnext
	b.rnext++
	n := copy(p, b.rbufs[i][:b.rhdrs[i].n])
	sa := &b.rnames[i]
	return n, netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), swap16(sa.Port)), nil
}

// receiveLocked fills the read batch with one recvmmsg, waiting for at
// least one datagram. Truncated datagrams (larger than readDatagram) are
// dropped. Call with b.rmu held.
func (b *batchConn) receiveLocked() error {
	for i := range b.rhdrs {
		b.riovs[i].SetLen(readDatagram)
		b.rhdrs[i].hdr.Namelen = syscall.SizeofSockaddrInet4
		b.rhdrs[i].hdr.Flags = 0
		b.rhdrs[i].n = 0
	}
	if err := b.raw.Read(b.rfn); err != nil {
		return err
	}
	got := b.rgot
	if b.rerrno != 0 {
		return &net.OpError{Op: "read", Net: "udp", Source: b.conn.LocalAddr(), Err: b.rerrno}
	}
	// Keep only whole datagrams, in order.
	k := 0
	for i := range got {
		if b.rhdrs[i].hdr.Flags&syscall.MSG_TRUNC != 0 {
			continue
		}
		if k != i {
			b.rbufs[k] = b.rbufs[i]
			b.rnames[k] = b.rnames[i]
			b.rhdrs[k].n = b.rhdrs[i].n
		}
		k++
	}
	b.recvDatagrams.Add(uint64(k))
	b.rn, b.rnext = k, 0
	return nil
}

// recvmmsg is the read batch's system call, for RawConn.Read. Call with
// b.rmu held.
func (b *batchConn) recvmmsg(fd uintptr) bool {
	for {
		r, _, e := syscall.Syscall6(sysRECVMMSG, fd, uintptr(unsafe.Pointer(&b.rhdrs[0])), batchSize, syscall.MSG_DONTWAIT, 0, 0)
		b.recvCalls.Add(1)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until readable (or the read deadline)
		}
		b.rgot, b.rerrno = int(r), e
		return true
	}
}

// ReadFrom implements net.PacketConn.
func (b *batchConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, ap, err := b.ReadFromAddrPort(p)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// WriteTo implements net.PacketConn.
func (b *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: net.InvalidAddrError("not a UDP address")}
	}
	return b.WriteToAddrPort(p, ua.AddrPort())
}

// WriteToAddrPort queues p for addr. The batch leaves when it is full,
// when a writer finds its oldest packet half the delay old, or when the
// delay has passed.
func (b *batchConn) WriteToAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	ip := addr.Addr().Unmap()
	if !ip.Is4() {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(addr), Err: net.InvalidAddrError("not an IPv4 address")}
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, net.ErrClosed
	}
	if len(p) > batchDatagram {
		// Too large for a slot: send what waits first, to keep the order.
		for b.sending {
			b.sent.Wait()
		}
		if b.pending.n > 0 {
			b.sending = true
			b.sendLocked()
			b.sending = false
			b.sent.Broadcast()
		}
		b.armLocked()
		b.mu.Unlock()
		return b.conn.WriteToUDPAddrPort(p, netip.AddrPortFrom(ip, addr.Port()))
	}
	for b.pending.n == batchSize { // full while another goroutine sends
		b.sent.Wait()
		if b.closed {
			b.mu.Unlock()
			return 0, net.ErrClosed
		}
	}
	now := time.Now()
	sb := b.pending
	i := sb.n
	if i == 0 {
		sb.first = now
	}
	sb.n++
	n := copy(sb.bufs[i][:], p)
	sb.iovs[i].SetLen(n)
	sa := &sb.names[i]
	sa.Family = syscall.AF_INET
	sa.Addr = ip.As4()
	sa.Port = swap16(addr.Port())
	if !b.sending && (sb.n == batchSize || now.Sub(sb.first) >= b.delay/2) {
		b.sending = true
		b.sendLocked()
		b.sending = false
		b.sent.Broadcast()
	}
	b.armLocked()
	b.mu.Unlock()
	return n, nil
}

// sendLocked sends the pending batch, and again while the batch that
// filled meanwhile is due. Call with b.mu held and b.sending set by the
// caller; b.mu is released during each system call.
func (b *batchConn) sendLocked() {
	for {
		sb := b.pending
		b.pending, b.spare = b.spare, sb
		b.sent.Broadcast() // writers waiting for room have it now
		b.mu.Unlock()
		_ = b.send(sb) // lost like any UDP datagram
		b.mu.Lock()
		if b.pending.n < batchSize && (b.pending.n == 0 || time.Since(b.pending.first) < b.delay/2) {
			return
		}
	}
}

// send writes the datagrams of sb with as few sendmmsg calls as the
// kernel allows. A datagram the kernel refuses is skipped (UDP loses
// packets anyway); the first such error is returned. Call without b.mu,
// from the goroutine that set b.sending.
func (b *batchConn) send(sb *sendBatch) error {
	var firstErr error
	b.sb, b.soff = sb, 0
	for b.soff < sb.n {
		err := b.raw.Write(b.sfn)
		switch {
		case err != nil: // closed, or past the write deadline: the rest is lost
			if firstErr == nil {
				firstErr = err
			}
			b.soff = sb.n
		case b.serrno != 0: // the datagram at soff was refused
			if firstErr == nil {
				firstErr = &net.OpError{Op: "write", Net: "udp", Source: b.conn.LocalAddr(), Err: b.serrno}
			}
			b.soff++
		default:
			b.sentDatagrams.Add(uint64(b.sgot))
			b.soff += b.sgot
		}
	}
	sb.n, b.sb = 0, nil
	return firstErr
}

// sendmmsg is the write batch's system call, for RawConn.Write. Call
// from the goroutine that set b.sending.
func (b *batchConn) sendmmsg(fd uintptr) bool {
	sb := b.sb
	for {
		r, _, e := syscall.Syscall6(sysSENDMMSG, fd, uintptr(unsafe.Pointer(&sb.hdrs[b.soff])), uintptr(sb.n-b.soff), syscall.MSG_DONTWAIT, 0, 0)
		b.sendCalls.Add(1)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until writable (or the write deadline)
		}
		b.sgot, b.serrno = int(r), e
		return true
	}
}

// armLocked starts the timer that sends a batch nobody else sends in
// time. Call with b.mu held.
func (b *batchConn) armLocked() {
	if b.armed || b.pending.n == 0 || b.closed {
		return
	}
	b.armed = true
	b.timer.Reset(b.delay - time.Since(b.pending.first))
}

func (b *batchConn) timerFired() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.armed = false
	if b.sending || b.closed {
		return // the sender arms the timer again when it is done
	}
	if b.pending.n > 0 {
		b.sending = true
		sb := b.pending
		b.pending, b.spare = b.spare, sb
		b.sent.Broadcast()
		b.mu.Unlock()
		_ = b.send(sb) // lost like any UDP datagram
		b.mu.Lock()
		if b.pending.n == batchSize || (b.pending.n > 0 && time.Since(b.pending.first) >= b.delay/2) {
			b.sendLocked()
		}
		b.sending = false
		b.sent.Broadcast()
	}
	b.armLocked()
}

// Flush sends every queued datagram now.
func (b *batchConn) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.sending {
		b.sent.Wait()
	}
	if b.pending.n == 0 {
		return nil
	}
	b.sending = true
	sb := b.pending
	b.pending, b.spare = b.spare, sb
	b.mu.Unlock()
	err := b.send(sb)
	b.mu.Lock()
	b.sending = false
	b.sent.Broadcast()
	b.armLocked()
	return err
}

// Close sends what is queued and closes the socket.
func (b *batchConn) Close() error {
	_ = b.Flush()
	b.mu.Lock()
	b.closed = true
	b.timer.Stop()
	b.sent.Broadcast()
	b.mu.Unlock()
	return b.conn.Close()
}

// LocalAddr implements net.PacketConn.
func (b *batchConn) LocalAddr() net.Addr { return b.conn.LocalAddr() }

// SetDeadline implements net.PacketConn; the write deadline bounds the
// sending of batches.
func (b *batchConn) SetDeadline(t time.Time) error { return b.conn.SetDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (b *batchConn) SetReadDeadline(t time.Time) error { return b.conn.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn.
func (b *batchConn) SetWriteDeadline(t time.Time) error { return b.conn.SetWriteDeadline(t) }

// batchCounts are a batching socket's system calls and datagrams.
type batchCounts struct {
	SendCalls, SentDatagrams, RecvCalls, RecvDatagrams uint64
}

func (b *batchConn) counts() batchCounts {
	return batchCounts{b.sendCalls.Load(), b.sentDatagrams.Load(), b.recvCalls.Load(), b.recvDatagrams.Load()}
}

// swap16 converts a port between this machine's byte order (amd64 and
// arm64 are little endian) and the network's, in sockaddr_in.
func swap16(p uint16) uint16 { return p>>8 | p<<8 }

//go:build linux && (amd64 || arm64)

package sfu

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

func listenLoopback(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newTestBatchConn(t testing.TB, delay time.Duration) *batchConn {
	t.Helper()
	b, err := newBatchConn(listenLoopback(t), delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// received reads what c has waiting within wait, as the sequence numbers
// in the packets' first two bytes.
func received(t *testing.T, c *net.UDPConn, wait time.Duration) []uint16 {
	t.Helper()
	var got []uint16
	buf := make([]byte, 2000)
	for {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return got
		}
		if n < 2 {
			t.Fatalf("datagram of %d bytes", n)
		}
		got = append(got, binary.BigEndian.Uint16(buf))
	}
}

func addrPort(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// TestBatchConnSendsWhenFull: with a delay too long to matter, nothing
// leaves before batchSize packets are queued, then all of them leave, in
// order, each to its own destination, in one system call.
func TestBatchConnSendsWhenFull(t *testing.T) {
	b := newTestBatchConn(t, time.Hour)
	dst := []*net.UDPConn{listenLoopback(t), listenLoopback(t)}
	pkt := make([]byte, 1200)
	write := func(i int) {
		binary.BigEndian.PutUint16(pkt, uint16(i))
		if n, err := b.WriteToAddrPort(pkt, addrPort(dst[i%2])); err != nil || n != len(pkt) {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	for i := range batchSize - 1 {
		write(i)
	}
	if got := received(t, dst[0], 50*time.Millisecond); len(got) != 0 {
		t.Fatalf("%d packets left before the batch was full", len(got))
	}
	write(batchSize - 1)
	for k, c := range dst {
		got := received(t, c, 200*time.Millisecond)
		if len(got) != batchSize/2 {
			t.Fatalf("destination %d got %d packets, want %d", k, len(got), batchSize/2)
		}
		for j, seq := range got {
			if int(seq) != 2*j+k {
				t.Fatalf("destination %d: packet %d is %d, want %d (order or address wrong)", k, j, seq, 2*j+k)
			}
		}
	}
	if n := b.counts(); n.SendCalls != 1 || n.SentDatagrams != batchSize {
		t.Fatalf("%d system calls for %d datagrams, want 1 for %d", n.SendCalls, n.SentDatagrams, batchSize)
	}
}

// TestBatchConnSendsAfterDelay: a lone packet leaves once the delay has
// passed, without another write.
func TestBatchConnSendsAfterDelay(t *testing.T) {
	const delay = 20 * time.Millisecond
	b := newTestBatchConn(t, delay)
	dst := listenLoopback(t)
	start := time.Now()
	if _, err := b.WriteTo([]byte{0, 7}, dst.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	got := received(t, dst, time.Second)
	if len(got) != 1 || got[0] != 7 {
		t.Fatalf("got %v, want [7]", got)
	}
	if el := time.Since(start); el < delay {
		t.Fatalf("the packet left after %v, before the delay of %v", el, delay)
	}
}

// TestBatchConnKeepsOrder: packets written by one goroutine over many
// batches, some of them too large for a slot, arrive complete and in
// order, and share system calls.
func TestBatchConnKeepsOrder(t *testing.T) {
	b := newTestBatchConn(t, 5*time.Millisecond)
	dst := listenLoopback(t)
	_ = dst.SetReadBuffer(4 << 20)
	const total = 1000
	small, large := make([]byte, 1000), make([]byte, 3000)
	for i := range total {
		p := small
		if i%97 == 0 {
			p = large
		}
		binary.BigEndian.PutUint16(p, uint16(i))
		if _, err := b.WriteToAddrPort(p, addrPort(dst)); err != nil {
			t.Fatal(err)
		}
	}
	got := received(t, dst, 200*time.Millisecond)
	if len(got) != total {
		t.Fatalf("got %d packets, want %d", len(got), total)
	}
	for i, seq := range got {
		if int(seq) != i {
			t.Fatalf("packet %d is %d", i, seq)
		}
	}
	if n := b.counts(); n.SendCalls*4 > total {
		t.Fatalf("%d system calls for %d packets: not batched", n.SendCalls, total)
	}
}

// TestBatchConnCloseSends: Close sends what is queued, and later writes
// fail.
func TestBatchConnCloseSends(t *testing.T) {
	b, err := newBatchConn(listenLoopback(t), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dst := listenLoopback(t)
	for i := range 3 {
		_, _ = b.WriteToAddrPort([]byte{0, byte(i)}, addrPort(dst))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := received(t, dst, 200*time.Millisecond); len(got) != 3 {
		t.Fatalf("got %v after Close, want 3 packets", got)
	}
	if _, err := b.WriteToAddrPort([]byte{0, 9}, addrPort(dst)); err == nil {
		t.Fatal("write after Close succeeded")
	}
}

// TestBatchConnReceivesInBatches: datagrams waiting in the socket are
// taken in one system call and handed out one by one, in order, with
// their sources.
func TestBatchConnReceivesInBatches(t *testing.T) {
	b := newTestBatchConn(t, time.Millisecond)
	src := []*net.UDPConn{listenLoopback(t), listenLoopback(t)}
	to := b.LocalAddr().(*net.UDPAddr).AddrPort()
	const total = 10
	for i := range total {
		if _, err := src[i%2].WriteToUDPAddrPort([]byte{0, byte(i), 1, 2, 3}, to); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1500)
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range total {
		n, from, err := b.ReadFromAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != 5 || buf[1] != byte(i) {
			t.Fatalf("datagram %d: %x", i, buf[:n])
		}
		if from != addrPort(src[i%2]) {
			t.Fatalf("datagram %d from %v, want %v", i, from, addrPort(src[i%2]))
		}
	}
	if n := b.counts(); n.RecvCalls != 1 || n.RecvDatagrams != total {
		t.Fatalf("%d system calls for %d datagrams, want 1 for %d", n.RecvCalls, n.RecvDatagrams, total)
	}
	// The read deadline still applies.
	_ = b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := b.ReadFrom(buf); err == nil {
		t.Fatal("read with nothing sent returned")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
}

// TestBatchConnDoesNotAllocate: queueing a packet and sending a batch
// cost no heap allocation.
func TestBatchConnDoesNotAllocate(t *testing.T) {
	b := newTestBatchConn(t, time.Hour)
	dst := addrPort(listenLoopback(t))
	pkt := make([]byte, 1200)
	// Each run fills and sends a batch: AllocsPerRun rounds down, so an
	// allocation per system call must show in a run.
	if a := testing.AllocsPerRun(20, func() {
		for range batchSize {
			_, _ = b.WriteToAddrPort(pkt, dst)
		}
	}); a != 0 {
		t.Fatalf("%v allocations per batch of %d writes", a, batchSize)
	}
	if n := b.counts(); n.SendCalls < 20 {
		t.Fatalf("%d batches sent, want at least 20", n.SendCalls)
	}
	src := listenLoopback(t)
	to := addrPort(b.conn)
	buf := make([]byte, 1500)
	if a := testing.AllocsPerRun(20, func() {
		_, _ = src.WriteToUDPAddrPort(pkt, to)
		if _, _, err := b.ReadFromAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("%v allocations per received datagram", a)
	}
}

// BenchmarkUDPWrite compares one sendmsg per packet with the batched
// writes of the shared port, for a 1200-byte packet to loopback.
func BenchmarkUDPWrite(b *testing.B) {
	pkt := make([]byte, 1200)
	b.Run("sendmsg", func(b *testing.B) {
		c := listenLoopback(b)
		dst := addrPort(listenLoopback(b))
		b.ReportAllocs()
		b.SetBytes(int64(len(pkt)))
		for b.Loop() {
			if _, err := c.WriteToUDPAddrPort(pkt, dst); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("batched", func(b *testing.B) {
		c := newTestBatchConn(b, defaultBatchDelay)
		dst := addrPort(listenLoopback(b))
		b.ReportAllocs()
		b.SetBytes(int64(len(pkt)))
		for b.Loop() {
			if _, err := c.WriteToAddrPort(pkt, dst); err != nil {
				b.Fatal(err)
			}
		}
		n := c.counts()
		b.ReportMetric(float64(n.SentDatagrams)/float64(max(n.SendCalls, 1)), "packets/syscall")
	})
}

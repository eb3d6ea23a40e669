//go:build !linux || !(amd64 || arm64)

package sfu

import (
	"errors"
	"net"
	"time"
)

// batchingAvailable says whether newBatchConn batches on this platform:
// sendmmsg and recvmmsg are wired for Linux on amd64 and arm64 only.
const batchingAvailable = false

// batchConn is not available here; see udpbatch.go.
type batchConn struct{ net.PacketConn }

type batchCounts struct {
	SendCalls, SentDatagrams, RecvCalls, RecvDatagrams uint64
}

func (*batchConn) counts() batchCounts { return batchCounts{} }

func newBatchConn(*net.UDPConn, time.Duration) (*batchConn, error) {
	return nil, errors.New("sfu: UDP batching needs Linux on amd64 or arm64")
}

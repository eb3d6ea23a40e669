package signaling

import (
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Socket timing.
const (
	writeTimeout = 10 * time.Second
	// pingInterval keeps NATs and proxies from dropping an idle socket and
	// lets us notice a dead one: a client that answers no ping within
	// readTimeout is considered gone (and may resume).
	pingInterval = 15 * time.Second
	readTimeout  = 40 * time.Second
	helloTimeout = 10 * time.Second
	// sendQueue is how many messages may wait for a slow socket before
	// we give up on it.
	sendQueue = 256
)

// frame is something for the writer to do: send data, or close.
type frame struct {
	data      []byte
	closeCode int
	closeText string
}

// conn is one WebSocket. Only its writer goroutine writes to the socket;
// the others hand it frames.
type conn struct {
	ws   *websocket.Conn
	out  chan frame
	once sync.Once
	quit chan struct{} // closed when the connection is being closed
}

func newConn(ws *websocket.Conn) *conn {
	c := &conn{ws: ws, out: make(chan frame, sendQueue), quit: make(chan struct{})}
	go c.writeLoop()
	return c
}

func (c *conn) writeLoop() {
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	defer c.ws.Close()
	for {
		select {
		case f := <-c.out:
			if f.closeCode != 0 {
				_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(f.closeCode, f.closeText), time.Now().Add(writeTimeout))
				// Give the peer a moment to read the reason before the
				// TCP connection goes away.
				time.Sleep(50 * time.Millisecond)
				return
			}
			_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := c.ws.WriteMessage(websocket.TextMessage, f.data); err != nil {
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout)); err != nil {
				return
			}
		}
	}
}

// send queues m for writing. It never blocks: a socket too slow to keep
// up with its queue is closed.
func (c *conn) send(m *message) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	select {
	case <-c.quit:
	case c.out <- frame{data: b}:
	default:
		c.close(errTooSlow)
	}
}

// close queues a close frame with the code and reason err maps to, after
// the messages already queued.
func (c *conn) close(err error) {
	c.once.Do(func() {
		close(c.quit)
		code, text := closeCode(err)
		if err == nil {
			code, text = closeNormal, "bye"
		}
		select {
		case c.out <- frame{closeCode: code, closeText: text}:
		default:
			c.ws.Close() // the queue is full: no time for courtesy
		}
	})
}

// readError turns a read failure into the error that explains it.
func readError(err error) error {
	if errors.Is(err, websocket.ErrReadLimit) {
		return errTooBig
	}
	return err
}

package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"teleconsult/auth"
	"teleconsult/problem"
	"teleconsult/sfu"
)

// ProtocolVersion is the version a client must announce in its hello.
const ProtocolVersion = 1

// Message types. PROTOCOL.md describes each one.
const (
	typeHello     = "hello"
	typeWelcome   = "welcome"
	typeOffer     = "offer"
	typeAnswer    = "answer"
	typeCandidate = "candidate"
	typeRestart   = "restart"
	typeWaiting   = "waiting"
	typeAdmit     = "admit"
	typeAdmitted  = "admitted"
	typeLeft      = "left"
	typeEnd       = "end"
	typeEnded     = "ended"
	typeLeave     = "leave"
	typeInvite    = "invite"
	typeChat      = "chat"
	typeFile      = "file"
	typeStats     = "stats"
	typeError     = "error"
)

// Limits on what a client may send.
const (
	maxMessageBytes = 512 << 10 // a file of maxFileBytes, base64-encoded, with room to spare
	maxFileBytes    = 256 << 10
	maxChatBytes    = 4000
	maxSDPBytes     = 64 << 10
	maxNameBytes    = 200
)

// message is the one envelope of the protocol: every message has a type,
// and the other fields that type uses.
type message struct {
	Type        string                   `json:"type"`
	Version     int                      `json:"version,omitempty"`
	Token       string                   `json:"token,omitempty"`
	Resume      string                   `json:"resume,omitempty"`
	Room        string                   `json:"room,omitempty"`
	Resumed     bool                     `json:"resumed,omitempty"`
	Participant string                   `json:"participant,omitempty"`
	Name        string                   `json:"name,omitempty"`
	Role        string                   `json:"role,omitempty"`
	State       string                   `json:"state,omitempty"`
	Peers       []peerInfo               `json:"peers,omitempty"`
	PC          sfu.Direction            `json:"pc,omitempty"`
	SDP         string                   `json:"sdp,omitempty"`
	Labels      map[string]string        `json:"labels,omitempty"`
	Streams     map[string]streamInfo    `json:"streams,omitempty"`
	Candidate   *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Text        string                   `json:"text,omitempty"`
	File        *fileInfo                `json:"file,omitempty"`
	Expires     int64                    `json:"expires,omitempty"` // unix seconds
	Time        int64                    `json:"time,omitempty"`    // unix milliseconds
	Stats       []sfu.PeerStats          `json:"stats,omitempty"`
	Code        string                   `json:"code,omitempty"`
	Message     string                   `json:"message,omitempty"`
}

// peerInfo is another participant as a client sees it.
type peerInfo struct {
	Participant string `json:"participant"`
	Name        string `json:"name"`
	Role        string `json:"role"`
	State       string `json:"state"` // "waiting" or "admitted"
}

// streamInfo says whose media a stream of the down connection carries.
type streamInfo struct {
	Participant string `json:"participant"`
	Name        string `json:"name"`
	Role        string `json:"role"`
	Label       string `json:"label"`
}

// fileInfo is a small file sent to the other participants.
type fileInfo struct {
	Name string `json:"name"`
	Mime string `json:"mime"`
	Data []byte `json:"data"` // base64 in JSON
}

// Protocol problems: each closes the offending client's socket with the
// close code closeCode gives it, and affects no one else.
var (
	errMalformed  = problem.New(problem.Invalid, "malformed", "malformed message")
	errOutOfOrder = problem.New(problem.Conflict, "out_of_order", "message out of order")
	errVersion    = problem.New(problem.Invalid, "version", "unsupported protocol version")
	errForbidden  = problem.New(problem.Forbidden, "forbidden", "not allowed for your role")
	errOtherRoom  = problem.New(problem.Forbidden, "other_room", "this join token is for another consultation")
	errRoomFull   = problem.New(problem.Forbidden, "room_full", "this consultation already has this participant")
	errNotInvited = problem.New(problem.Forbidden, "not_invited", "this guest link is not valid or was already used")
	errEnded      = problem.New(problem.Gone, "ended", "this consultation has ended")
	errReplaced   = problem.New(problem.Conflict, "replaced", "you joined from another window")
	errTimeout    = problem.New(problem.Invalid, "timeout", "no hello in time")
	errTooSlow    = problem.New(problem.TooMany, "too_slow", "the connection cannot keep up")
	errTooBig     = problem.New(problem.Invalid, "too_big", "message too big")
	errShutdown   = problem.New(problem.Unavailable, "shutdown", "the server is restarting; please reconnect")
	errConsultEnd = problem.New(problem.Gone, "consultation_ended", "the consultation has ended")
)

// WebSocket close codes (4000-4999 are ours to define; see PROTOCOL.md).
const (
	closeNormal       = websocket.CloseNormalClosure // 1000: the consultation ended or the client left
	closeTooBig       = websocket.CloseMessageTooBig // 1009
	closeGoingAway    = websocket.CloseGoingAway     // 1001: server shutting down
	closeMalformed    = 4400
	closeUnauthorized = 4401
	closeForbidden    = 4403
	closeTimeout      = 4408
	closeConflict     = 4409 // out of order, or replaced by a newer session
	closeEnded        = 4410
	closeTooSlow      = 4429
)

// closeCode maps an error to a WebSocket close code and a short reason.
// It is the only place where that mapping happens.
func closeCode(err error) (int, string) {
	p := problem.As(err)
	switch {
	case errors.Is(err, errTooBig):
		return closeTooBig, p.Message
	case errors.Is(err, errTimeout):
		return closeTimeout, p.Message
	case errors.Is(err, errShutdown):
		return closeGoingAway, p.Message
	case errors.Is(err, errConsultEnd):
		return closeNormal, p.Message
	}
	switch p.Kind {
	case problem.Invalid:
		return closeMalformed, p.Message
	case problem.Unauthorized:
		return closeUnauthorized, p.Message
	case problem.Forbidden, problem.NotFound:
		return closeForbidden, p.Message
	case problem.Conflict:
		return closeConflict, p.Message
	case problem.Gone:
		return closeEnded, p.Message
	case problem.TooMany:
		return closeTooSlow, p.Message
	}
	return websocket.CloseInternalServerErr, "internal error"
}

// decode parses one client message strictly: unknown fields, trailing
// data, unknown types and fields out of bounds are malformed.
func decode(b []byte) (*message, error) {
	var m message
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, errMalformed.Withf("malformed message: %s", jsonReason(err))
	}
	if dec.More() {
		return nil, errMalformed.With("malformed message: trailing data")
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func jsonReason(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "not JSON"
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	return "unexpected content"
}

// validate checks the fields a client-sent message of each type needs.
func (m *message) validate() error {
	bad := func(why string) error { return errMalformed.Withf("malformed %s: %s", m.Type, why) }
	switch m.Type {
	case typeHello:
		if m.Version == 0 {
			return bad("version missing")
		}
		if m.Token == "" && m.Resume == "" {
			return bad("token missing")
		}
	case typeOffer:
		if m.PC != sfu.Up || m.SDP == "" || len(m.SDP) > maxSDPBytes {
			return bad(`needs pc "up" and an sdp`)
		}
		for k, v := range m.Labels {
			if len(k) > 64 || (v != "camera" && v != "screen") {
				return bad(`labels are "camera" or "screen"`)
			}
		}
	case typeAnswer:
		if m.PC != sfu.Down || m.SDP == "" || len(m.SDP) > maxSDPBytes {
			return bad(`needs pc "down" and an sdp`)
		}
	case typeCandidate:
		if (m.PC != sfu.Up && m.PC != sfu.Down) || m.Candidate == nil || len(m.Candidate.Candidate) > 1024 {
			return bad(`needs pc "up" or "down" and a candidate`)
		}
	case typeAdmit:
		if m.Participant == "" {
			return bad("participant missing")
		}
	case typeInvite:
		if len(m.Name) > maxNameBytes || !utf8.ValidString(m.Name) {
			return bad("name too long")
		}
	case typeChat:
		if m.Text == "" || len(m.Text) > maxChatBytes || !utf8.ValidString(m.Text) {
			return bad("text empty or too long")
		}
	case typeFile:
		if m.File == nil || m.File.Name == "" || len(m.File.Name) > maxNameBytes || len(m.File.Mime) > 100 || len(m.File.Data) == 0 || len(m.File.Data) > maxFileBytes {
			return bad("needs a name and at most 256 KiB of data")
		}
	case typeRestart, typeEnd, typeLeave:
	default:
		return errMalformed.With("unknown message type")
	}
	return nil
}

// peerOf returns the peerInfo of claims in state.
func peerOf(c auth.JoinClaims, state string) peerInfo {
	return peerInfo{Participant: c.Participant, Name: c.Name, Role: c.Role, State: state}
}

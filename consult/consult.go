// Package consult joins the booking side and the video side of a
// consultation: it decides who may enter a room and when (issuing the
// signed join token the signalling server trusts alone), and it is the
// signalling server's Hooks: it tells the practitioner a patient is
// waiting, completes the appointment when the consult ends, and keeps the
// in-call chat, sealed, with the appointment.
package consult

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/auth"
	"teleconsult/live"
	"teleconsult/problem"
	"teleconsult/relay"
	"teleconsult/signaling"
	"teleconsult/store"
	"teleconsult/vault"
)

// The room is open from Early before the start until Grace after the end.
const (
	Early = 15 * time.Minute
	Grace = 30 * time.Minute
	// tokenTTL bounds a join token: enough to connect and reconnect, short
	// enough that a leaked token is soon useless.
	tokenTTL = 10 * time.Minute
)

// Problems of joining.
var (
	ErrNotVideo   = problem.New(problem.Conflict, "not_video", "this appointment is not a video consultation")
	ErrNotOpen    = problem.New(problem.Conflict, "room_not_open", "the consultation room is not open yet")
	ErrClosed     = problem.New(problem.Conflict, "room_closed", "the consultation room has closed")
	ErrNotPayable = problem.New(problem.Conflict, "not_confirmed", "this appointment is not confirmed")
)

// ICE gives the ICE servers (with TURN credentials) for a participant.
type ICE interface {
	ICEServers(participant string, now time.Time) []relay.ICEServer
}

// Completer is told when a consult ended (payments capture the hold).
type Completer interface {
	OnCompleted(ctx context.Context, appointmentID string) error
}

// Placer places a consult's room on one node of the cluster.
type Placer interface {
	// Place returns the node room lives on, placing it if needed.
	Place(ctx context.Context, room string) (Placement, error)
	// Finished says room's consult is over on this node.
	Finished(ctx context.Context, room string) error
}

// Placement is the node a room lives on and its signalling URL.
type Placement struct {
	Node         string
	SignalingURL string
}

// Service admits participants and keeps the record of the consults.
type Service struct {
	DB           *store.DB
	Vault        *vault.Vault
	Signer       *auth.JoinSigner
	ICE          ICE       // nil: no TURN servers offered
	Completer    Completer // nil: nothing to do when completed
	SignalingURL string    // ws(s)://host/api/v1/signal
	// Placer, when set, chooses the node of each room; its signalling URL
	// then replaces SignalingURL in the join answer.
	Placer Placer
	Now    func() time.Time
	Log    *slog.Logger
}

var (
	_ signaling.Hooks     = (*Service)(nil)
	_ signaling.AdmitHook = (*Service)(nil)
	_ signaling.CloseHook = (*Service)(nil)
)

// ICEServer is one entry of the answer's ice_servers.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// JoinInfo is what a participant needs to enter the room.
type JoinInfo struct {
	Token        string      `json:"token"`
	SignalingURL string      `json:"signaling_url"`
	ICEServers   []ICEServer `json:"ice_servers"`
	Role         string      `json:"role"`
	Room         string      `json:"room"`
	ExpiresAt    time.Time   `json:"expires_at"`
	// Node is the id of the node the room lives on (empty without a Placer).
	Node string `json:"node,omitempty"`
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Join admits acct to the video room of appointment id: only its patient
// and practitioner (others: not found, audited), only for a video
// appointment that is confirmed, only from Early before the start until
// Grace after the end.
func (s *Service) Join(ctx context.Context, acct *auth.Account, id string, actor audit.Actor) (JoinInfo, error) {
	appt, err := store.AppointmentByID(ctx, s.DB.Pool, id)
	if err != nil {
		return JoinInfo{}, err
	}
	role := ""
	switch acct.ID {
	case appt.PatientID:
		role = auth.RolePatient
	case appt.PractitionerID:
		role = auth.RolePractitioner
	}
	if role == "" {
		_ = audit.Record(ctx, s.DB.Pool, audit.Entry{Actor: actor, Action: "join", ObjectType: "appointment", ObjectID: id, SubjectID: appt.PatientID, Outcome: audit.Denied})
		return JoinInfo{}, store.ErrNotFound.With("appointment not found")
	}
	if appt.Mode != "video" {
		return JoinInfo{}, ErrNotVideo
	}
	switch appt.Status {
	case store.StatusConfirmed, store.StatusArrived, store.StatusInProgress:
	case store.StatusCompleted:
		return JoinInfo{}, ErrClosed.With("this consultation has ended")
	default:
		return JoinInfo{}, ErrNotPayable.Withf("this appointment is %s; only a confirmed appointment can be joined", strings.ReplaceAll(appt.Status, "_", " "))
	}
	now := s.now()
	opens, closes := appt.StartsAt.Add(-Early), appt.EndsAt.Add(Grace)
	if now.Before(opens) {
		return JoinInfo{}, ErrNotOpen.Withf("the consultation room opens at %s, %d minutes before the start", opens.UTC().Format(time.RFC3339), int(Early.Minutes()))
	}
	if !now.Before(closes) {
		return JoinInfo{}, ErrClosed.Withf("the consultation room closed at %s", closes.UTC().Format(time.RFC3339))
	}
	exp := now.Add(tokenTTL)
	if exp.After(closes) {
		exp = closes
	}
	info := JoinInfo{SignalingURL: s.SignalingURL, Role: role, Room: appt.ID, ExpiresAt: exp, ICEServers: []ICEServer{}}
	claims := auth.JoinClaims{Room: appt.ID, Participant: acct.ID, Name: acct.Name, Role: role, Expires: exp}
	if s.Placer != nil {
		p, err := s.Placer.Place(ctx, appt.ID)
		if err != nil {
			return JoinInfo{}, err
		}
		info.SignalingURL, info.Node = p.SignalingURL, p.Node
		if role == auth.RolePatient {
			// A patient re-joining after their room moved to another node
			// must not fall back into the waiting room.
			if claims.Admitted, err = store.RoomWasAdmitted(ctx, s.DB.Pool, appt.ID); err != nil {
				return JoinInfo{}, err
			}
		}
	}
	if info.Token, err = s.Signer.Sign(claims); err != nil {
		return JoinInfo{}, err
	}
	if s.ICE != nil {
		for _, is := range s.ICE.ICEServers(acct.ID, now) {
			info.ICEServers = append(info.ICEServers, ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
		}
	}
	err = audit.Record(ctx, s.DB.Pool, audit.Entry{Actor: actor, Action: "join", ObjectType: "appointment", ObjectID: id, SubjectID: appt.PatientID})
	return info, err
}

// hookTimeout bounds the database work a hook does.
const hookTimeout = 10 * time.Second

// async runs the hook's work off the signalling loop.
func (s *Service) async(name, room string, fn func(ctx context.Context) error) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
		defer cancel()
		if err := fn(ctx); err != nil && s.Log != nil {
			s.Log.Warn("consult hook failed", "hook", name, "room", room, "err", err)
		}
	}()
}

// Waiting marks the appointment arrived and tells the practitioner, on
// whichever node their browser is.
func (s *Service) Waiting(room string, who auth.JoinClaims) {
	s.async("waiting", room, func(ctx context.Context) error {
		return s.DB.Tx(ctx, func(tx pgx.Tx) error {
			appt, err := store.AppointmentByID(ctx, tx, room)
			if err != nil {
				return err
			}
			if appt.Status == store.StatusConfirmed {
				if err := store.TransitionAppointment(ctx, tx, room, []string{store.StatusConfirmed}, store.StatusArrived, who.Participant, "entered the waiting room"); err != nil {
					return err
				}
			}
			return live.Publish(ctx, tx, live.Event{AccountID: appt.PractitionerID, Kind: "patient.waiting",
				Data: map[string]string{"appointment_id": room, "role": who.Role, "name": who.Name}})
		})
	})
}

// Admitted records that the practitioner let the patient in, so that a
// re-join on another node (after this one failed) skips the waiting room.
func (s *Service) Admitted(room string, who auth.JoinClaims) {
	if s.Placer == nil || who.Role != auth.RolePatient || !store.ValidID(room) {
		return
	}
	s.async("admitted", room, func(ctx context.Context) error { return store.RoomAdmitted(ctx, s.DB.Pool, room) })
}

// Ended completes the appointment, ends the room's placement on this
// node and triggers the payment capture.
func (s *Service) Ended(room string, by auth.JoinClaims) {
	s.async("ended", room, func(ctx context.Context) error {
		var appt store.Appointment
		err := s.DB.Tx(ctx, func(tx pgx.Tx) error {
			var err error
			if appt, err = store.AppointmentByID(ctx, tx, room); err != nil {
				return err
			}
			err = store.TransitionAppointment(ctx, tx, room, []string{store.StatusConfirmed, store.StatusArrived, store.StatusInProgress}, store.StatusCompleted, by.Participant, "video consultation ended")
			if err != nil {
				return err
			}
			for _, id := range []string{appt.PatientID, appt.PractitionerID} {
				if err := live.Publish(ctx, tx, live.Event{AccountID: id, Kind: "appointment.changed", Data: map[string]string{"appointment_id": room, "status": store.StatusCompleted}}); err != nil {
					return err
				}
			}
			return nil
		})
		// The room is gone from this node whatever became of the
		// appointment: it must stop counting as the node's load.
		if ferr := s.finished(ctx, room); err == nil {
			err = ferr
		}
		if err != nil {
			return err
		}
		if s.Completer != nil {
			return s.Completer.OnCompleted(ctx, room)
		}
		return nil
	})
}

// Closed ends the placement of a room that closed empty (everyone left
// without ending the consultation), so that it no longer counts as this
// node's load nor keeps a drained node waiting. A later join places the
// room again.
func (s *Service) Closed(room string) {
	if s.Placer == nil {
		return
	}
	s.async("closed", room, func(ctx context.Context) error { return s.finished(ctx, room) })
}

// finished tells the placer that room no longer lives on this node.
func (s *Service) finished(ctx context.Context, room string) error {
	if s.Placer == nil || !store.ValidID(room) {
		return nil
	}
	return s.Placer.Finished(ctx, room)
}

func chatAAD(id string) vault.AAD {
	return vault.AAD{Table: "consult_messages", Column: "body", RowID: id}
}

// Chat keeps a chat line, sealed with the patient's key.
func (s *Service) Chat(room string, from auth.JoinClaims, text string) {
	at := s.now()
	s.async("chat", room, func(ctx context.Context) error {
		return s.DB.Tx(ctx, func(tx pgx.Tx) error {
			appt, err := store.AppointmentByID(ctx, tx, room)
			if err != nil {
				return err
			}
			key, err := s.Vault.AccountKey(ctx, tx, appt.PatientID)
			if err != nil {
				return err
			}
			id, err := store.NewConsultMessageID(ctx, tx)
			if err != nil {
				return err
			}
			body, err := s.Vault.SealString(ctx, tx, key, chatAAD(id), text)
			if err != nil {
				return err
			}
			err = store.InsertConsultMessage(ctx, tx, store.ConsultMessage{ID: id, AppointmentID: room, SenderID: from.Participant,
				SenderRole: from.Role, SenderName: from.Name, SentAt: at, Body: body})
			if err != nil {
				return err
			}
			return audit.Record(ctx, tx, audit.Entry{Actor: audit.Actor{ID: participantAccount(from), Role: from.Role},
				Action: "write", ObjectType: "chat", ObjectID: id, SubjectID: appt.PatientID})
		})
	})
}

// participantAccount is the account id of a participant (guests have none).
func participantAccount(c auth.JoinClaims) string {
	if c.Role == auth.RoleGuest || !store.ValidID(c.Participant) {
		return ""
	}
	return c.Participant
}

// ChatLine is a chat message as its readers see it.
type ChatLine struct {
	ID     string    `json:"id"`
	From   string    `json:"from"`
	Role   string    `json:"role"`
	SentAt time.Time `json:"sent_at"`
	Text   string    `json:"text"`
}

// History returns the chat of appointment id to its patient or
// practitioner (others: not found), audited.
func (s *Service) History(ctx context.Context, acct *auth.Account, id string, actor audit.Actor) ([]ChatLine, error) {
	appt, err := store.AppointmentByID(ctx, s.DB.Pool, id)
	if err != nil {
		return nil, err
	}
	if acct.ID != appt.PatientID && acct.ID != appt.PractitionerID {
		_ = audit.Record(ctx, s.DB.Pool, audit.Entry{Actor: actor, Action: "read", ObjectType: "chat", ObjectID: id, SubjectID: appt.PatientID, Outcome: audit.Denied})
		return nil, store.ErrNotFound.With("appointment not found")
	}
	msgs, err := store.ConsultMessages(ctx, s.DB.Pool, id)
	if err != nil {
		return nil, err
	}
	out := make([]ChatLine, 0, len(msgs))
	for _, m := range msgs {
		text, err := s.Vault.OpenString(ctx, s.DB.Pool, chatAAD(m.ID), m.Body)
		if err != nil {
			return nil, fmt.Errorf("consult: open chat line: %w", err)
		}
		out = append(out, ChatLine{ID: m.ID, From: m.SenderName, Role: m.SenderRole, SentAt: m.SentAt, Text: text})
	}
	err = audit.Record(ctx, s.DB.Pool, audit.Entry{Actor: actor, Action: "read", ObjectType: "chat", ObjectID: id, SubjectID: appt.PatientID})
	return out, err
}

package payments

import (
	"context"
	"errors"
	"time"

	"teleconsult/store"
)

// reconcileBatch is how many payments one Reconcile pass claims at a time.
const reconcileBatch = 20

// Reconcile repairs what webhooks and hooks left undone: checkouts whose
// webhook never came (or whose creation answer was lost), checkouts whose
// slot is gone, saved cards due for their off-session authorisation, and
// holds whose consultation was completed, missed or cancelled. Each
// payment is leased with FOR UPDATE SKIP LOCKED, so several nodes can run
// it at once. It returns how many payments it looked at.
func (s *Service) Reconcile(ctx context.Context) (int, error) {
	total := 0
	for {
		ps, err := store.ClaimDuePayments(ctx, s.db.Pool, s.now(), staleAfter, jobLease, AuthorizeLead, reconcileBatch)
		if err != nil {
			return total, err
		}
		for _, p := range ps {
			if err := s.settle(ctx, p.AppointmentID); err != nil {
				s.countGatewayError(err)
				// The lease runs out and a later pass tries again.
				s.log.Warn("reconcile payment", "appointment_id", p.AppointmentID, "state", p.State, "err", err)
			}
		}
		total += len(ps)
		s.metrics.reconciled.Add(float64(len(ps)))
		if len(ps) < reconcileBatch || ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}

// RunJobs runs Reconcile every interval until ctx is done. Run it on
// every node.
func (s *Service) RunJobs(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("payments reconcile", "err", err)
		} else if n > 0 {
			s.log.Debug("payments reconciled", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// countGatewayError counts a failed payments step by kind.
func (s *Service) countGatewayError(err error) {
	kind := "other"
	switch {
	case errors.Is(err, ErrGatewayUnavailable):
		kind = "unavailable"
	case errors.Is(err, ErrCardDeclined), errors.Is(err, ErrAuthenticationRequired):
		kind = "declined"
	}
	s.metrics.gateway.WithLabelValues(kind).Inc()
}

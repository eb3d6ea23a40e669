package payments

import (
	"context"
	"errors"

	"teleconsult/store"
)

// OnboardingLink returns a one-time Stripe URL where the practitioner
// sets up (or finishes setting up) the Express account they are paid
// through. The account is created on the first call.
func (s *Service) OnboardingLink(ctx context.Context, practitionerID string) (string, error) {
	acct, err := store.PayoutAccountOf(ctx, s.db.Pool, practitionerID)
	if errors.Is(err, store.ErrNotFound) {
		ca, err := s.gw.CreateExpressAccount(ctx, practitionerID, accountKey(practitionerID))
		if err != nil {
			return "", err
		}
		if acct, err = store.SavePayoutAccount(ctx, s.db.Pool, practitionerID, ca.ID, ca.ChargesEnabled); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	settings := s.cfg.BaseURL + "/settings/payouts"
	return s.gw.AccountLink(ctx, acct.Account, settings+"?onboarding=refresh", settings+"?onboarding=done")
}

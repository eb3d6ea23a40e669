package payments

// Idempotency keys are derived from our own ids, so that a retry of the
// same step after a crash or a timeout (by us or by stripe-go) is the same
// request to Stripe and never moves money twice. The version suffix lets a
// deliberate second attempt with other parameters use a new key.

func checkoutKey(appointmentID string) string { return "appointment:" + appointmentID + ":checkout:v1" }
func setupKey(appointmentID string) string    { return "appointment:" + appointmentID + ":setup:v1" }
func expireKey(appointmentID, sessionID string) string {
	return "appointment:" + appointmentID + ":expire-checkout:" + sessionID + ":v1"
}
func authorizeKey(appointmentID string) string {
	return "appointment:" + appointmentID + ":authorize:v1"
}
func actionCheckoutKey(appointmentID string) string {
	return "appointment:" + appointmentID + ":action-checkout:v1"
}
func captureKey(appointmentID string) string { return "appointment:" + appointmentID + ":capture:v1" }
func noShowKey(appointmentID string) string {
	return "appointment:" + appointmentID + ":no-show-capture:v1"
}
func cancelKey(appointmentID string) string { return "appointment:" + appointmentID + ":cancel:v1" }
func cancelOffSessionKey(appointmentID string) string {
	return "appointment:" + appointmentID + ":cancel-off-session:v1"
}
func refundKey(appointmentID string) string { return "appointment:" + appointmentID + ":refund:v1" }
func customerKey(accountID string) string   { return "account:" + accountID + ":customer:v1" }
func accountKey(practitionerID string) string {
	return "practitioner:" + practitionerID + ":connect-account:v1"
}

package e2e

import (
	"testing"
	"time"
)

// The device check of the consultation page: the patient sees their
// camera, chooses among the devices, and the level meter moves with the
// (fake) microphone's sound.
func TestConsultDeviceCheck(t *testing.T) {
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	pat := e.browser("patient")
	pat.signup("Camille Martin", "camille@example.org")
	id, _ := pat.book(doc, "Contrôle", false, false)
	pat.open("/consult/" + id)
	pat.waitJS("camera preview", `document.querySelector('#preview').videoWidth > 0`, 15*time.Second)
	pat.waitJS("devices listed", `document.querySelectorAll('#camera option').length > 0 && document.querySelectorAll('#microphone option').length > 0`, 10*time.Second)
	pat.waitJS("level meter moves", `Number(document.querySelector('#meter').getAttribute('aria-valuenow')) > 0`, 10*time.Second)
	if got := pat.text("#appt-line"); got == "" {
		t.Error("the page does not say which appointment this is")
	}
	pat.screenshot("consult-check", true)
}

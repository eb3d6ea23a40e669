package booking

import (
	"context"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/store"
)

// PageSize is the number of practitioners per page of search results.
const PageSize = 20

// SearchQuery is a directory search as a patient asks it.
type SearchQuery struct {
	Specialty string
	City      string
	Postcode  string
	Near      *store.GeoPoint
	RadiusKm  float64
	VideoOnly bool
	Language  string
	// Sort is "availability" (default) or "distance" (needs Near).
	Sort string
	Page int // from 1
}

// NextSlotRef is a search result's earliest free slot.
type NextSlotRef struct {
	Start              time.Time `json:"start"`
	End                time.Time `json:"end"`
	ConsultationTypeID string    `json:"consultation_type_id"`
}

// Result is one practitioner in search results.
type Result struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	Specialty   string       `json:"specialty"`
	City        string       `json:"city"`
	Postcode    string       `json:"postcode"`
	Address     string       `json:"address"`
	Languages   []string     `json:"languages"`
	PhotoURL    string       `json:"photo_url,omitempty"`
	OffersVideo bool         `json:"offers_video"`
	DistanceKm  *float64     `json:"distance_km,omitempty"`
	NextSlot    *NextSlotRef `json:"next_slot"`
}

var languageRe = regexp.MustCompile(`^[a-z]{2,3}$`)

// Search finds practitioners, PageSize at a time; each result carries its
// next free slot. more says whether another page follows.
func (s *Service) Search(ctx context.Context, q SearchQuery) (results []Result, more bool, err error) {
	if q.Specialty != "" {
		if _, ok := SpecialtyByCode(q.Specialty); !ok {
			return nil, false, ErrInvalid.Withf("unknown specialty %q (see /api/v1/specialties)", q.Specialty)
		}
	}
	if q.Language != "" && !languageRe.MatchString(q.Language) {
		return nil, false, ErrInvalid.With("language must be a two-letter code such as fr or en")
	}
	if q.RadiusKm < 0 || q.RadiusKm > 200 {
		return nil, false, ErrInvalid.With("radius_km must be between 0 and 200")
	}
	if q.Near != nil && (math.Abs(q.Near.Lat) > 90 || math.Abs(q.Near.Lon) > 180) {
		return nil, false, ErrInvalid.With("near must be LAT,LON in degrees")
	}
	if q.Sort != "" && q.Sort != "availability" && q.Sort != "distance" {
		return nil, false, ErrInvalid.With("sort must be availability or distance")
	}
	if q.Sort == "distance" && q.Near == nil {
		return nil, false, ErrInvalid.With("sorting by distance needs near=LAT,LON")
	}
	if q.Page < 1 {
		q.Page = 1
	}
	if q.Page > 500 {
		return nil, false, ErrInvalid.With("page is too far; narrow the search")
	}
	rows, more, err := store.SearchPractitioners(ctx, s.db.Pool, store.SearchFilter{
		Specialty: q.Specialty, City: strings.TrimSpace(q.City), Postcode: strings.TrimSpace(q.Postcode),
		Near: q.Near, RadiusKm: q.RadiusKm, VideoOnly: q.VideoOnly, Language: q.Language,
		ByDistance: q.Sort == "distance", Limit: PageSize, Offset: (q.Page - 1) * PageSize,
	})
	if err != nil {
		return nil, false, err
	}
	out := make([]Result, 0, len(rows))
	for _, r := range rows {
		res := Result{ID: r.ID, Name: r.Name, Specialty: r.Specialty, City: r.City, Postcode: r.Postcode,
			Address: r.Address, Languages: r.Languages, PhotoURL: r.PhotoURL, OffersVideo: r.OffersVideo, DistanceKm: r.DistanceKm}
		if res.DistanceKm != nil {
			d := math.Round(*res.DistanceKm*10) / 10
			res.DistanceKm = &d
		}
		if r.NextStart != nil && r.NextConsultationID != nil && r.NextDuration != nil {
			res.NextSlot = &NextSlotRef{Start: r.NextStart.UTC(), End: r.NextStart.Add(time.Duration(*r.NextDuration) * time.Minute).UTC(),
				ConsultationTypeID: *r.NextConsultationID}
		}
		out = append(out, res)
	}
	return out, more, nil
}

// Profile is a practitioner's public page.
type Profile struct {
	store.Practitioner
	SpecialtyLabel    Specialty                `json:"specialty_label"`
	ConsultationTypes []store.ConsultationType `json:"consultation_types"`
}

// Practitioner returns a practitioner's public profile with the
// consultation types offered.
func (s *Service) Practitioner(ctx context.Context, id string) (Profile, error) {
	p, err := store.PractitionerByID(ctx, s.db.Pool, id)
	if err != nil {
		return Profile{}, err
	}
	types, err := store.ConsultationTypes(ctx, s.db.Pool, id, false)
	if err != nil {
		return Profile{}, err
	}
	sp, _ := SpecialtyByCode(p.Specialty)
	return Profile{Practitioner: p, SpecialtyLabel: sp, ConsultationTypes: types}, nil
}

var (
	rppsRe     = regexp.MustCompile(`^[0-9]{11}$`)
	postcodeRe = regexp.MustCompile(`^[0-9A-Za-z -]{0,10}$`)
)

// checkProfile validates a practitioner's profile and fills defaults.
func checkProfile(p *store.Practitioner) error {
	if _, ok := SpecialtyByCode(p.Specialty); !ok {
		return ErrInvalid.Withf("unknown specialty %q (see /api/v1/specialties)", p.Specialty)
	}
	if !rppsRe.MatchString(p.RPPS) {
		return ErrInvalid.With("the RPPS number has 11 digits")
	}
	if !postcodeRe.MatchString(p.Postcode) {
		return ErrInvalid.With("the postcode is not valid")
	}
	if (p.Latitude == nil) != (p.Longitude == nil) {
		return ErrInvalid.With("give both latitude and longitude, or neither")
	}
	if p.Latitude != nil && (math.Abs(*p.Latitude) > 90 || math.Abs(*p.Longitude) > 180) {
		return ErrInvalid.With("latitude and longitude are out of range")
	}
	for _, l := range p.Languages {
		if !languageRe.MatchString(l) {
			return ErrInvalid.Withf("%q is not a language code such as fr or en", l)
		}
	}
	if p.PhotoURL != "" && !strings.HasPrefix(p.PhotoURL, "/") && !strings.HasPrefix(p.PhotoURL, "https://") {
		return ErrInvalid.With("the photo must be an https:// or a local URL")
	}
	if p.TimeZone == "" {
		p.TimeZone = "Europe/Paris"
	}
	if _, err := location(p.TimeZone); err != nil {
		return err
	}
	if p.HorizonDays == 0 {
		p.HorizonDays = 60
	}
	if p.HorizonDays < 1 || p.HorizonDays > 365 {
		return ErrInvalid.With("the booking horizon is between 1 and 365 days")
	}
	if p.MinNoticeMinutes < 0 || p.MinNoticeMinutes > 14*24*60 || p.CancelCutoffMinutes < 0 || p.CancelCutoffMinutes > 14*24*60 {
		return ErrInvalid.With("notice and cancellation cut-off are between 0 and 14 days")
	}
	if p.NoShowLimit == 0 {
		p.NoShowLimit = 3
	}
	if p.NoShowLimit < 1 || p.NoShowLimit > 100 {
		return ErrInvalid.With("the no-show limit is between 1 and 100")
	}
	if len(p.Presentation) > 2000 || len(p.Address) > 300 || len(p.City) > 100 || len(p.Phone) > 30 {
		return ErrInvalid.With("a field is too long")
	}
	return nil
}

// DefaultPractitioner returns a profile with the documented defaults.
func DefaultPractitioner(accountID string) store.Practitioner {
	return store.Practitioner{AccountID: accountID, Languages: []string{"fr"}, TimeZone: "Europe/Paris",
		HorizonDays: 60, MinNoticeMinutes: 120, CancelCutoffMinutes: 240, NoShowLimit: 3}
}

// SaveProfile creates or updates the calling practitioner's profile.
func (s *Service) SaveProfile(ctx context.Context, who audit.Actor, p store.Practitioner) (Profile, error) {
	if who.Role != rolePractitioner {
		return Profile{}, ErrPractitionerOnly
	}
	p.AccountID = who.ID
	if err := checkProfile(&p); err != nil {
		return Profile{}, err
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := store.UpsertPractitioner(ctx, tx, p); err != nil {
			return err
		}
		if err := store.LockPractitioner(ctx, tx, who.ID); err != nil {
			return err
		}
		return refreshNextFree(ctx, tx, who.ID, s.now())
	})
	if err != nil {
		return Profile{}, err
	}
	return s.Practitioner(ctx, who.ID)
}

// SaveConsultationType creates (c.ID empty) or updates one of the calling
// practitioner's consultation types.
func (s *Service) SaveConsultationType(ctx context.Context, who audit.Actor, c store.ConsultationType) (store.ConsultationType, error) {
	if who.Role != rolePractitioner {
		return c, ErrPractitionerOnly
	}
	c.PractitionerID = who.ID
	c.Name = strings.TrimSpace(c.Name)
	switch {
	case c.Name == "" || len(c.Name) > 100:
		return c, ErrInvalid.With("a consultation type needs a name (up to 100 characters)")
	case c.Mode != "video" && c.Mode != "in_person":
		return c, ErrInvalid.With("mode must be video or in_person")
	case c.DurationMinutes < 5 || c.DurationMinutes > 240:
		return c, ErrInvalid.With("the duration is between 5 and 240 minutes")
	case c.FeeCents < 0 || c.FeeCents > 1000000:
		return c, ErrInvalid.With("the fee is between 0 and 10,000.00")
	}
	if c.Currency == "" {
		c.Currency = "EUR"
	}
	if c.Currency != "EUR" {
		return c, ErrInvalid.With("the currency must be EUR")
	}
	var out store.ConsultationType
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := store.LockPractitioner(ctx, tx, who.ID); err != nil {
			return err
		}
		var err error
		if out, err = store.SaveConsultationType(ctx, tx, c); err != nil {
			return err
		}
		return refreshNextFree(ctx, tx, who.ID, s.now())
	})
	return out, err
}

// SetOpeningHours replaces the calling practitioner's weekly opening hours.
func (s *Service) SetOpeningHours(ctx context.Context, who audit.Actor, hours []store.OpeningHours) error {
	if who.Role != rolePractitioner {
		return ErrPractitionerOnly
	}
	if len(hours) > 500 {
		return ErrInvalid.With("too many opening ranges")
	}
	for _, h := range hours {
		if h.Weekday < 0 || h.Weekday > 6 {
			return ErrInvalid.With("weekday is 0 (Sunday) to 6 (Saturday)")
		}
		a, err := parseClock(h.Start)
		if err != nil {
			return err
		}
		b, err := parseClock(h.End)
		if err != nil {
			return err
		}
		if b <= a || b == 24*60 {
			return ErrInvalid.Withf("the range %s-%s is empty or crosses midnight (end before 24:00)", h.Start, h.End)
		}
	}
	return s.tx(ctx, func(tx pgx.Tx) error {
		if err := store.LockPractitioner(ctx, tx, who.ID); err != nil {
			return err
		}
		if err := store.ReplaceOpeningHours(ctx, tx, who.ID, hours); err != nil {
			return err
		}
		return refreshNextFree(ctx, tx, who.ID, s.now())
	})
}

// OpeningHours returns the calling practitioner's weekly opening hours.
func (s *Service) OpeningHours(ctx context.Context, practitionerID string) ([]store.OpeningHours, error) {
	return store.OpeningHoursOf(ctx, s.db.Pool, practitionerID)
}

// AddAbsence records an absence of the calling practitioner. Existing
// appointments in it are kept: the practitioner cancels them one by one,
// with a reason the patient receives.
func (s *Service) AddAbsence(ctx context.Context, who audit.Actor, start, end time.Time) (store.Absence, error) {
	if who.Role != rolePractitioner {
		return store.Absence{}, ErrPractitionerOnly
	}
	if !end.After(start) || end.Sub(start) > 366*24*time.Hour {
		return store.Absence{}, ErrInvalid.With("an absence ends after it starts, within a year")
	}
	var id string
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := store.LockPractitioner(ctx, tx, who.ID); err != nil {
			return err
		}
		var err error
		if id, err = store.AddAbsence(ctx, tx, who.ID, start, end); err != nil {
			return err
		}
		return refreshNextFree(ctx, tx, who.ID, s.now())
	})
	return store.Absence{ID: id, PractitionerID: who.ID, StartsAt: start, EndsAt: end}, err
}

// DeleteAbsence removes one of the calling practitioner's absences.
func (s *Service) DeleteAbsence(ctx context.Context, who audit.Actor, id string) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		if err := store.LockPractitioner(ctx, tx, who.ID); err != nil {
			return err
		}
		if err := store.DeleteAbsence(ctx, tx, who.ID, id); err != nil {
			return err
		}
		return refreshNextFree(ctx, tx, who.ID, s.now())
	})
}

// Absences returns the calling practitioner's current and future absences.
func (s *Service) Absences(ctx context.Context, who audit.Actor) ([]store.Absence, error) {
	return store.AbsencesOf(ctx, s.db.Pool, who.ID, s.now())
}

// SetBlock blocks (or, with blocked false, unblocks, which also forgives
// past no-shows) a patient of the calling practitioner.
func (s *Service) SetBlock(ctx context.Context, who audit.Actor, patientID string, blocked bool) error {
	if who.Role != rolePractitioner {
		return ErrPractitionerOnly
	}
	return s.tx(ctx, func(tx pgx.Tx) error {
		acct, err := store.AccountByID(ctx, tx, patientID)
		if err != nil || acct.Role != rolePatient {
			return store.ErrNotFound.With("patient not found")
		}
		// Only a patient who booked this practitioner may be
		// blocked: anyone else is not found, exactly like a missing id.
		seen, err := store.HasAppointmentWith(ctx, tx, who.ID, patientID)
		if err != nil {
			return err
		}
		if !seen {
			return store.ErrNotFound.With("patient not found")
		}
		if err := store.SetBlock(ctx, tx, who.ID, patientID, blocked, s.now()); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "write", ObjectType: "patient_block",
			ObjectID: patientID, SubjectID: patientID, Outcome: audit.OK, Detail: map[bool]string{true: "block", false: "unblock"}[blocked]})
	})
}

// BlockState is a patient's booking state with a practitioner.
type BlockState struct {
	PatientID   string `json:"patient_id"`
	PatientName string `json:"patient_name"`
	Blocked     bool   `json:"blocked"`
	ByHand      bool   `json:"by_hand"`
	NoShows     int    `json:"no_shows"`
}

// Blocks returns the patients the calling practitioner has blocked or
// who reached the no-show limit.
func (s *Service) Blocks(ctx context.Context, who audit.Actor) ([]BlockState, error) {
	if who.Role != rolePractitioner {
		return nil, ErrPractitionerOnly
	}
	p, err := store.PractitionerByID(ctx, s.db.Pool, who.ID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	ids, err := store.PatientsWithNoShows(ctx, s.db.Pool, who.ID, now.Add(-NoShowWindow))
	if err != nil {
		return nil, err
	}
	rows, err := store.BlocksOf(ctx, s.db.Pool, who.ID)
	if err != nil {
		return nil, err
	}
	for _, b := range rows {
		if !slices.Contains(ids, b.PatientID) {
			ids = append(ids, b.PatientID)
		}
	}
	out := []BlockState{}
	for _, id := range ids {
		b, err := store.BlockOf(ctx, s.db.Pool, who.ID, id)
		if err != nil {
			return nil, err
		}
		since := now.Add(-NoShowWindow)
		if b.LiftedAt != nil && b.LiftedAt.After(since) {
			since = *b.LiftedAt
		}
		n, err := store.CountNoShows(ctx, s.db.Pool, who.ID, id, since)
		if err != nil {
			return nil, err
		}
		st := BlockState{PatientID: id, ByHand: b.Blocked, NoShows: n, Blocked: b.Blocked || n >= p.NoShowLimit}
		if !st.Blocked && n == 0 {
			continue
		}
		if acct, err := store.AccountByID(ctx, s.db.Pool, id); err == nil {
			st.PatientName = acct.Name
		}
		out = append(out, st)
	}
	return out, nil
}

// Pharmacies finds pharmacies by city, postcode or near a point.
func (s *Service) Pharmacies(ctx context.Context, city, postcode string, near *store.GeoPoint, radiusKm float64, page int) ([]store.Pharmacy, error) {
	if radiusKm < 0 || radiusKm > 200 {
		return nil, ErrInvalid.With("radius_km must be between 0 and 200")
	}
	if page < 1 {
		page = 1
	}
	list, err := store.SearchPharmacies(ctx, s.db.Pool, strings.TrimSpace(city), strings.TrimSpace(postcode), near, radiusKm, PageSize, (page-1)*PageSize)
	if list == nil {
		list = []store.Pharmacy{}
	}
	return list, err
}

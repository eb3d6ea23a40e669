package booking

// Specialty is a medical specialty of the directory, stored by Code.
type Specialty struct {
	Code string `json:"code"`
	FR   string `json:"fr"`
	EN   string `json:"en"`
}

// Specialties is the fixed list of specialties a practitioner can have,
// in the order the directory shows them.
var Specialties = []Specialty{
	{"general_practice", "Médecine générale", "General practice"},
	{"pediatrics", "Pédiatrie", "Paediatrics"},
	{"gynecology", "Gynécologie", "Gynaecology"},
	{"obstetrics", "Obstétrique", "Obstetrics"},
	{"midwifery", "Sage-femme", "Midwifery"},
	{"dermatology", "Dermatologie", "Dermatology"},
	{"ophthalmology", "Ophtalmologie", "Ophthalmology"},
	{"ent", "ORL", "Ear, nose and throat"},
	{"cardiology", "Cardiologie", "Cardiology"},
	{"psychiatry", "Psychiatrie", "Psychiatry"},
	{"psychology", "Psychologie", "Psychology"},
	{"dentistry", "Chirurgie dentaire", "Dentistry"},
	{"orthodontics", "Orthodontie", "Orthodontics"},
	{"physiotherapy", "Masso-kinésithérapie", "Physiotherapy"},
	{"osteopathy", "Ostéopathie", "Osteopathy"},
	{"rheumatology", "Rhumatologie", "Rheumatology"},
	{"endocrinology", "Endocrinologie", "Endocrinology"},
	{"gastroenterology", "Gastro-entérologie", "Gastroenterology"},
	{"pulmonology", "Pneumologie", "Pulmonology"},
	{"neurology", "Neurologie", "Neurology"},
	{"urology", "Urologie", "Urology"},
	{"nephrology", "Néphrologie", "Nephrology"},
	{"oncology", "Oncologie", "Oncology"},
	{"allergology", "Allergologie", "Allergology"},
	{"orthopedics", "Chirurgie orthopédique", "Orthopaedic surgery"},
	{"radiology", "Radiologie", "Radiology"},
	{"sports_medicine", "Médecine du sport", "Sports medicine"},
	{"nutrition", "Nutrition", "Nutrition"},
	{"speech_therapy", "Orthophonie", "Speech therapy"},
	{"podiatry", "Pédicurie-podologie", "Podiatry"},
	{"geriatrics", "Gériatrie", "Geriatrics"},
	{"infectious_diseases", "Infectiologie", "Infectious diseases"},
}

var specialtyByCode = func() map[string]Specialty {
	m := make(map[string]Specialty, len(Specialties))
	for _, s := range Specialties {
		m[s.Code] = s
	}
	return m
}()

// SpecialtyByCode returns the specialty with that code.
func SpecialtyByCode(code string) (Specialty, bool) {
	s, ok := specialtyByCode[code]
	return s, ok
}

// Label returns the specialty's label in language lang ("fr" or "en").
func (s Specialty) Label(lang string) string {
	if lang == "en" {
		return s.EN
	}
	return s.FR
}

// home.js: the search form of the home page.

import { optionalSession } from './api.js';
import { fillSpecialties, nearMe } from './specialties.js';
import { $ } from './ui.js';

optionalSession();
fillSpecialties($('#specialty'));
nearMe(document.querySelector('.search-form'));

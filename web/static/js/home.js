// home.js: the search form of the home page.

import { optionalSession } from './api.js';
import { fillSpecialties } from './specialties.js';
import { $ } from './ui.js';

optionalSession();
fillSpecialties($('#specialty'));

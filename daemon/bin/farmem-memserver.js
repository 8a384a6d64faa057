#!/usr/bin/env node
'use strict';
require('../../dist/daemon/memserver/main.js');

@echo off
rem Stops the service and waits until it is STOPPED (used by upgrade.cmd and uninstall.cmd).
rem "net stop" asks NSSM to stop, which sends Ctrl-C: the agent drains (running jobs finish within
rem shutdownGraceMs or are released to other agents), then exits. net stop may return before that
rem (and does under Wine), so poll the state: up to NSSM's stop timeout + 30 s.
setlocal EnableExtensions
call "%~dp0common.cmd"
set /a "OUTPOST_STOP_WAIT_S=OUTPOST_STOP_TIMEOUT_MS/1000+30"
sc query "%SERVICE%" >nul 2>&1
if errorlevel 1 exit /b 0
sc query "%SERVICE%" | find "STOPPED" >nul
if not errorlevel 1 exit /b 0
rem NSSM reports START_PENDING for its throttle time (AppThrottle, 5 s) after a start. A stop sent in
rem that window stops the agent but leaves NSSM reporting RUNNING, and later stops do nothing (seen
rem under Wine: a stop 2.5 s after a start never finished). Wait that window out first (at most 30 s).
set /a WAITED=0
:starting
sc query "%SERVICE%" | find "START_PENDING" >nul
if errorlevel 1 goto stop
if %WAITED% GEQ 30 goto stop
ping -n 2 127.0.0.1 >nul
set /a WAITED+=1
goto starting
:stop
echo stopping %SERVICE% (running jobs drain first)
net stop "%SERVICE%" >nul 2>&1
set /a WAITED=0
:wait
sc query "%SERVICE%" | find "STOPPED" >nul
if not errorlevel 1 goto stopped
if %WAITED% GEQ %OUTPOST_STOP_WAIT_S% goto timeout
rem Not even STOP_PENDING (the stop did not take): ask again.
sc query "%SERVICE%" | find "STOP_PENDING" >nul
if errorlevel 1 net stop "%SERVICE%" >nul 2>&1
rem No "timeout" command in every cmd (Wine's): ping waits about one second per extra echo.
ping -n 2 127.0.0.1 >nul
set /a WAITED+=1
goto wait
:stopped
echo %SERVICE% stopped
exit /b 0
:timeout
echo %SERVICE% did not stop within %OUTPOST_STOP_WAIT_S% s 1>&2
sc query "%SERVICE%" 1>&2
exit /b 1

@echo off
rem Installs the Outpost agent as a Windows service (NSSM) that runs from this folder.
rem
rem   install.cmd [TOKEN_FILE]
rem
rem Run as Administrator from the folder the ZIP was unpacked to (keep that folder: the service runs
rem from it). Config, token, agent.env and logs live under %ProgramData%\Outpost and survive upgrade
rem and uninstall. TOKEN_FILE (a file holding the pool's agent token) is copied to
rem %ProgramData%\Outpost\agent-token; without it that file must exist already.
rem The service is not started: edit %ProgramData%\Outpost\agent.json, then "net start OutpostAgent".
setlocal EnableExtensions
call "%~dp0common.cmd"
sc query "%SERVICE%" >nul 2>&1
if not errorlevel 1 (
  echo install: service %SERVICE% exists already; use upgrade.cmd, or uninstall.cmd first 1>&2
  exit /b 1
)
if not exist "%DATA%\logs" mkdir "%DATA%\logs"
if not exist "%DATA%\secrets" mkdir "%DATA%\secrets"
rem Only SYSTEM and Administrators may read the token and secrets (ProgramData lets Users read by default).
icacls "%DATA%" /inheritance:r /grant:r "*S-1-5-18:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F" >nul 2>&1
if not exist "%DATA%\agent.json" (
  copy /y "%APPDIR%\agent.example.json" "%DATA%\agent.json" >nul
  echo install: wrote %DATA%\agent.json from the example: set proxy.url and resources
)
if not "%~1"=="" (
  copy /y "%~1" "%DATA%\agent-token" >nul
  if errorlevel 1 (
    echo install: cannot copy the token file %~1 1>&2
    exit /b 1
  )
)
if not exist "%DATA%\agent-token" (
  echo install: no token: run install.cmd TOKEN_FILE, or put the pool's agent token in %DATA%\agent-token 1>&2
  exit /b 1
)
"%NSSM%" install "%SERVICE%" "%APPDIR%\node.exe" >nul 2>&1
if errorlevel 1 (
  echo install: nssm install %SERVICE% failed 1>&2
  exit /b 1
)
call "%APPDIR%\configure.cmd"
if errorlevel 1 (
  "%NSSM%" remove "%SERVICE%" confirm >nul 2>&1
  echo install: configuration failed; service %SERVICE% removed again 1>&2
  exit /b 1
)
echo install: service %SERVICE% installed; check with "%APPDIR%\agent.cmd check", start with "net start %SERVICE%"
exit /b 0

from calendar_service.deadletters.archiver import main

main()
